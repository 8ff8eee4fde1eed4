-- wrk script: the lead-scoring service's example request to POST /api/v1/predict, as fast as answered.
-- Each request's time on the website differs, so no answer comes from the engine's cache of recent scores.
local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

local count = 0
local lead = '{"lead_id": "7927b2df-8bba-4d29-b9a2-b6e0beafe620", "payload": {'
  .. '"total_time_spent_on_website": %d.0, "last_notable_activity_sms_sent": 1.0, '
  .. '"lead_origin_lead_add_form": 0.0, '
  .. '"what_matters_most_to_you_in_choosing_a_course_better_career_prospects": 0.0, '
  .. '"occupation_working_professional": 0.0, "what_matters_most_to_you_in_choosing_a_course_unknown": 1.0, '
  .. '"total_visits": 9.0, "last_activity_sms_sent": 1.0, "page_views_per_visit": 4.5, '
  .. '"last_activity_email_opened": 0.0, "last_notable_activity_modified": 0.0, "do_not_email": 0.0, '
  .. '"specialization_unknown": 0.0, "lead_source_olark_chat": 0.0, "lead_source_direct_traffic": 0.0}}'

function request()
  count = count + 1
  local body = string.format(lead, (id * 5000000 + count) % 10000000)
  return wrk.format("POST", "/api/v1/predict", { ["Content-Type"] = "application/json" }, body)
end
