"""The applicant questionnaire, drawn column by column from a few latent traits.

A latent socio-economic standing drives education, income, SNILS and loan size; age drives employment,
family and tenure; employment drives income level and whether a job start date exists. Values come out
clean here (apart from structural blanks: no job, no start date); random blanks, typos and soft anomalies
are added afterwards by ``producer_tools.world.imperfections``. Dates are day ordinals (NaN = missing).
"""

from __future__ import annotations

import numpy as np

from models import vocabulary as vocab
from producer_tools.world.sampling import categorical, categorical_by_group, labels, ordinal, sigmoid
from producer_tools.world.scenarios import Scenario

Columns = dict[str, np.ndarray]

DAYS_PER_YEAR = 365.25

EDUCATION_SHARES = (0.02, 0.12, 0.34, 0.06, 0.08, 0.28, 0.05, 0.04, 0.01)
# Employment by age band (<24, 24-59, 60+), in vocabulary order: full time, part time, own business,
# pensioner, student, not working, maternity leave.
EMPLOYMENT_BY_AGE = (
    (0.40, 0.12, 0.02, 0.00, 0.35, 0.08, 0.03),
    (0.72, 0.06, 0.10, 0.01, 0.01, 0.06, 0.04),
    (0.25, 0.06, 0.04, 0.60, 0.00, 0.05, 0.00),
)
WORKING = np.array([True, True, True, False, False, False, True])  # has a current job, by employment code
INCOME_LEVEL = np.array([1.0, 0.55, 1.35, 0.45, 0.35, 0.30, 0.40])  # income multiplier, by employment code
ZERO_INCOME = np.array([0.0, 0.0, 0.02, 0.0, 0.30, 0.50, 0.20])  # share declaring no income
# Family status by age band (<25, 25-44, 45+), vocabulary order.
FAMILY_BY_AGE = ((0.75, 0.10, 0.13, 0.02, 0.0), (0.30, 0.45, 0.15, 0.09, 0.01), (0.12, 0.50, 0.08, 0.18, 0.12))
CHILDREN_BY_FAMILY = np.array([0.25, 1.3, 0.8, 1.0, 1.6])  # mean child count
# Tenure bucket upper edges in years, for vocabulary.JOB_TENURE ("менее 4 месяцев" .. "10 и более лет").
TENURE_EDGES = (4 / 12, 7 / 12, 1.0, 3.0, 5.0, 7.0, 9.0, 10.0)
# Median loan amount (RUB) by goods category, vocabulary order.
GOODS_MEDIAN_LOAN = np.array(
    [90e3, 35e3, 150e3, 140e3, 170e3, 40e3, 60e3, 50e3, 45e3, 25e3, 70e3, 50e3], dtype=np.float64
)
LOAN_TERMS = np.array([3, 4, 6, 10, 12, 18, 24, 36, 48, 60], dtype=np.float64)
TERMS_BY_SIZE = (  # loan under 30k, under 150k, larger
    (0.20, 0.05, 0.30, 0.15, 0.20, 0.05, 0.045, 0.0, 0.005, 0.0),
    (0.05, 0.02, 0.15, 0.15, 0.30, 0.13, 0.14, 0.055, 0.003, 0.002),
    (0.01, 0.01, 0.05, 0.09, 0.20, 0.20, 0.28, 0.15, 0.006, 0.004),
)
POSITIONS = (
    (
        "менеджер по продажам",
        "водитель",
        "продавец-консультант",
        "начальник производства",
        "бухгалтер",
        "инженер",
        "кладовщик",
        "оператор",
        "учитель",
        "медсестра",
        "программист",
        "специалист",
        "главный специалист",
        "начальник отдела",
        "директор",
        "слесарь",
        "повар",
        "администратор",
        "охранник",
        "врач",
    ),
    ("продавец", "курьер", "оператор call-центра", "уборщица", "репетитор", "администратор"),
    ("ИП", "индивидуальный предприниматель", "директор", "учредитель", "генеральный директор"),
    ("пенсионер", "сторож", "вахтер"),
    ("студент", "стажер", "курьер"),
    ("не работаю", "безработный"),
    ("бухгалтер", "менеджер", "воспитатель", "продавец"),
)


def draw_applicants(rng: np.random.Generator, day: np.ndarray, scenario: Scenario) -> tuple[Columns, np.ndarray]:
    """The questionnaire columns for events dated ``day`` (day ordinals), and the employment codes."""
    n = len(day)
    standing = rng.standard_normal(n)
    age = 18.0 + 57.0 * rng.beta(1.7, 3.4, n)
    band = np.digitize(age, [24.0, 60.0])
    employment = categorical_by_group(rng, band, EMPLOYMENT_BY_AGE)
    tenure = _tenure_years(rng, age, employment)
    income = _income(rng, standing, age, employment)
    family = categorical_by_group(rng, np.digitize(age, [25.0, 45.0]), FAMILY_BY_AGE)
    goods = categorical(rng, n, scenario.goods_shares)
    loan = _loan_amount(rng, standing, goods)
    cols: Columns = {
        "birthdate": day - np.round(age * DAYS_PER_YEAR),
        "education": labels(_education(rng, standing, age), vocab.EDUCATION),
        "employment_status": labels(employment, vocab.EMPLOYMENT_STATUS),
        "value": _tenure_bucket(rng, tenure),
        "jobstartdate": _job_start(rng, day, tenure, scenario.jobstart_missing),
        "position": _positions(rng, employment),
        "monthprofit": _round_money(rng, income * scenario.income_factor, 100.0),
        "monthexpense": _expense(rng, income),
        "gender": (rng.random(n) < 0.46).astype(np.float64),
        "family_status": labels(family, vocab.FAMILY_STATUS),
        "childcount": _children(rng, age, family),
        "snils": (rng.random(n) < np.clip(0.6 + 0.16 * WORKING[employment] + 0.06 * standing, 0, 1)) * 1.0,
        "merch_code": 1.0 + np.floor(400.0 * rng.beta(0.6, 2.2, n)),
        "loan_amount": loan,
        "loan_term": _loan_term(rng, loan),
        "goods_category": labels(goods, vocab.GOODS_CATEGORY),
    }
    return cols, employment


def _education(rng: np.random.Generator, standing: np.ndarray, age: np.ndarray) -> np.ndarray:
    rank = ordinal(0.6 * standing + 0.8 * rng.standard_normal(len(age)), EDUCATION_SHARES)
    # nobody finishes a degree before 22: they are still studying
    return np.where((age < 22.0) & (rank >= 4), 3, rank)


def _tenure_years(rng: np.random.Generator, age: np.ndarray, employment: np.ndarray) -> np.ndarray:
    """Years in the current (or, for a few non-workers, the last) job; NaN when there is none."""
    n = len(age)
    has_job = WORKING[employment] | (rng.random(n) < 0.15)
    cap = np.maximum(age - 17.0, 0.2) * 0.95
    tenure = np.minimum(rng.gamma(1.3, 3.2, n), cap)
    return np.where(has_job, tenure, np.nan)


def _job_start(rng: np.random.Generator, day: np.ndarray, tenure: np.ndarray, missing: float) -> np.ndarray:
    start = day - np.round(tenure * DAYS_PER_YEAR)
    return np.where(rng.random(len(day)) < missing, np.nan, start)


def _tenure_bucket(rng: np.random.Generator, tenure: np.ndarray) -> np.ndarray:
    """The form's tenure bucket: mostly consistent with the start date, sometimes one bucket off."""
    n = len(tenure)
    bucket = np.digitize(np.nan_to_num(tenure), TENURE_EDGES)
    off = rng.random(n) < 0.06
    bucket = np.clip(bucket + off * rng.choice([-1, 1], n), 0, len(vocab.JOB_TENURE) - 1)
    # without a job most leave it blank, the rest tick something
    no_job = np.isnan(tenure)
    bucket = np.where(no_job, rng.integers(0, len(vocab.JOB_TENURE), n), bucket)
    out = labels(bucket, vocab.JOB_TENURE)
    out[no_job & (rng.random(n) < 0.9)] = None
    return out


def _income(rng: np.random.Generator, standing: np.ndarray, age: np.ndarray, employment: np.ndarray) -> np.ndarray:
    """Monthly income before any scenario factor: log-normal, heavy right tail, zeros for some non-workers."""
    n = len(age)
    log_income = (
        np.log(68_000.0)
        + 0.45 * standing
        + 0.4 * rng.standard_normal(n)
        + np.log(INCOME_LEVEL[employment])
        - 0.25 * sigmoid((24.0 - age) / 2.0)
    )
    outlier = rng.random(n) < 0.008
    log_income += outlier * rng.uniform(1.0, 2.5, n)
    income = np.minimum(np.exp(log_income), 4_500_000.0)
    income[rng.random(n) < ZERO_INCOME[employment]] = 0.0
    return _round_money(rng, income, 1.0)


def _expense(rng: np.random.Generator, income: np.ndarray) -> np.ndarray:
    n = len(income)
    ratio = 0.15 + 0.7 * rng.beta(3.0, 3.5, n)
    living = np.exp(np.log(12_000.0) + 0.5 * rng.standard_normal(n))  # what people without income spend
    expense = np.where(income > 0, income * ratio, living)
    return np.round(expense / 1000.0) * 1000.0


def _round_money(rng: np.random.Generator, amount: np.ndarray, finest: float) -> np.ndarray:
    """People state round sums: most to 5,000, some to 1,000, a few exactly."""
    step = np.where(rng.random(len(amount)) < 0.7, 5000.0, 1000.0)
    step = np.where(rng.random(len(amount)) < 0.1, finest, step)
    return np.round(amount / step) * step


def _children(rng: np.random.Generator, age: np.ndarray, family: np.ndarray) -> np.ndarray:
    mean = CHILDREN_BY_FAMILY[family] * np.where(age < 23.0, 0.35, 1.0)
    count = rng.poisson(mean).astype(np.float64)
    large = rng.random(len(age)) < 0.002  # the odd large family
    return np.where(large, rng.integers(6, 13, len(age)), count).astype(np.float64)


def _loan_amount(rng: np.random.Generator, standing: np.ndarray, goods: np.ndarray) -> np.ndarray:
    n = len(goods)
    amount = np.exp(np.log(GOODS_MEDIAN_LOAN[goods]) + 0.25 * standing + 0.5 * rng.standard_normal(n))
    amount *= np.where(rng.random(n) < 0.003, rng.uniform(3.0, 8.0, n), 1.0)
    amount = np.clip(amount, 3000.0, 4_500_000.0)
    step = np.where(rng.random(n) < 0.6, 1000.0, 100.0)
    return np.round(amount / step) * step


def _loan_term(rng: np.random.Generator, loan: np.ndarray) -> np.ndarray:
    size = np.digitize(loan, [30_000.0, 150_000.0])
    return LOAN_TERMS[categorical_by_group(rng, size, TERMS_BY_SIZE)]


def _positions(rng: np.random.Generator, employment: np.ndarray) -> np.ndarray:
    """Free-text job titles: blank for most non-workers, often truncated, sometimes in capitals."""
    n = len(employment)
    draws = rng.random((n, 3)).tolist()
    blank = rng.random(n) < np.where(WORKING[employment], 0.05, 0.65)
    out = np.empty(n, dtype=object)
    for i in np.flatnonzero(~blank).tolist():
        out[i] = _title(POSITIONS[employment[i]], *draws[i])
    return out


def _title(titles: tuple[str, ...], pick: float, cut: float, case: float) -> str:
    title = titles[int(pick * len(titles))]
    if cut < 0.3 and len(title) > 6:  # the form's field is short: text gets cut
        title = title[: 4 + int(cut / 0.3 * (len(title) - 5))]
    return title.upper() if case < 0.05 else title.capitalize() if case < 0.15 else title
