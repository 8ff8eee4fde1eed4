-- wrk script: distinct pre-scoring forms to POST /upload_features, paced, every answer recorded.
-- Each connection waits GATEWAY_DELAY_MS after every answer (the offered rate is connections / (delay + latency)).
-- Each wrk thread appends "<status> <task_id>" per answer to GATEWAY_ACKS.<thread>.
local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

local count = 0
local acks
local pause = tonumber(os.getenv("GATEWAY_DELAY_MS") or "0")
local form = '{"birthdate": "1988-07-21 00:00:00.0000000", "education": "Высшее - специалист", '
  .. '"employment_status": "Работаю по найму полный рабочий день/служу", "value": "9 - 10 лет", '
  .. '"jobstartdate": "2013-09-01 00:00:00.0000000", "position": "начальник п", "monthprofit": %d.0, '
  .. '"monthexpense": 100000.0, "gender": 0, "family_status": "Никогда в браке не состоял(а)", '
  .. '"childcount": 0, "snils": 0, "merch_code": 77, "loan_amount": %d.0, "loan_term": 18.0, '
  .. '"goods_category": "Furniture"}'

function init(args)
  acks = io.open(os.getenv("GATEWAY_ACKS") .. "." .. id, "w")
  acks:setvbuf("line")
end

function request()
  count = count + 1
  -- a different income per request: a different form, task and score
  local body = string.format(form, 100000 + id * 10000000 + count, 50000 + count % 200000)
  return wrk.format("POST", "/upload_features", { ["Content-Type"] = "application/json" }, body)
end

function delay()
  return pause
end

function response(status, headers, body)
  acks:write(status, " ", body:match('"task_id":"(%x+)"') or "-", "\n")
end
