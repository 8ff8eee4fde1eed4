"""The categories the models know, per categorical field, in a fixed order.

The order is the integer code a category gets in the feature pipeline (0-based); anything not listed
is an *unknown* category: the feature pipeline scores it as missing and counts it as an anomaly.
Ordinal fields (education, tenure bucket) are listed from lowest to highest, so their codes are ranks.
"""

from __future__ import annotations

EDUCATION = (
    "Неполное среднее",
    "Среднее",
    "Среднее профессиональное",
    "Неоконченное высшее",
    "Высшее - бакалавр",
    "Высшее - специалист",
    "Высшее - магистр",
    "Несколько высших",
    "Ученая степень",
)

EMPLOYMENT_STATUS = (
    "Работаю по найму полный рабочий день/служу",
    "Работаю по найму неполный рабочий день",
    "Собственное дело",
    "Пенсионер",
    "Студент",
    "Не работаю",
    "Декретный отпуск",
)

# Job tenure bucket ("value" on the form), shortest first.
JOB_TENURE = (
    "менее 4 месяцев",
    "4 - 6 месяцев",
    "7 - 12 месяцев",
    "1 - 2 года",
    "3 - 4 года",
    "5 - 6 лет",
    "7 - 8 лет",
    "9 - 10 лет",
    "10 и более лет",
)

FAMILY_STATUS = (
    "Никогда в браке не состоял(а)",
    "Женат / замужем",
    "Гражданский брак / совместное проживание",
    "Разведен(а)",
    "Вдовец / вдова",
)

GOODS_CATEGORY = (
    "Furniture",
    "Mobile_devices",
    "Travel",
    "Medical_services",
    "Education",
    "Fitness",
    "Electronics",
    "Home_appliances",
    "Auto_parts",
    "Clothing",
    "Jewelry",
    "Other",
)

LEAD_ORIGIN = ("Landing Page Submission", "API", "Lead Add Form", "Lead Import")

LEAD_SOURCE = (
    "Google",
    "Direct Traffic",
    "Olark Chat",
    "Organic Search",
    "Reference",
    "Welingak Website",
    "Referral Sites",
    "Facebook",
    "bing",
    "Click2call",
)

LAST_ACTIVITY = (
    "Email Opened",
    "SMS Sent",
    "Olark Chat Conversation",
    "Page Visited on Website",
    "Converted to Lead",
    "Email Bounced",
    "Email Link Clicked",
    "Form Submitted on Website",
    "Unreachable",
    "Unsubscribed",
    "Had a Phone Conversation",
)

LAST_NOTABLE_ACTIVITY = (
    "Modified",
    "Email Opened",
    "SMS Sent",
    "Page Visited on Website",
    "Olark Chat Conversation",
    "Email Link Clicked",
    "Email Bounced",
    "Unsubscribed",
    "Unreachable",
    "Had a Phone Conversation",
)

OCCUPATION = ("Unemployed", "Working Professional", "Student", "Businessman", "Housewife", "Other")

SPECIALIZATION = (
    "Finance Management",
    "Human Resource Management",
    "Marketing Management",
    "Operations Management",
    "Business Administration",
    "IT Projects Management",
    "Supply Chain Management",
    "Banking, Investment And Insurance",
    "Media and Advertising",
    "Travel and Tourism",
    "International Business",
    "Healthcare Management",
    "Hospitality Management",
    "E-COMMERCE",
    "Retail Management",
    "Rural and Agribusiness",
    "E-Business",
    "Services Excellence",
)

WHAT_MATTERS = ("Better Career Prospects", "Flexibility & Convenience", "Other")

# field path in the event -> its vocabulary
CATEGORICAL_FIELDS: dict[str, tuple[str, ...]] = {
    "applicant.education": EDUCATION,
    "applicant.employment_status": EMPLOYMENT_STATUS,
    "applicant.value": JOB_TENURE,
    "applicant.family_status": FAMILY_STATUS,
    "applicant.goods_category": GOODS_CATEGORY,
    "activity.lead_origin": LEAD_ORIGIN,
    "activity.lead_source": LEAD_SOURCE,
    "activity.last_activity": LAST_ACTIVITY,
    "activity.last_notable_activity": LAST_NOTABLE_ACTIVITY,
    "activity.occupation": OCCUPATION,
    "activity.specialization": SPECIALIZATION,
    "activity.what_matters_most_to_you_in_choosing_a_course": WHAT_MATTERS,
}
