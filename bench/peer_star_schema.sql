-- The star schema of financial_assets/transform/star_schema.py, as DuckDB SQL (the peer stack).
--
-- Run by bench/peer_dlt.py, which first
--   * creates the views raw_customers, raw_accounts, raw_transactions, raw_transaction_events
--     over the Parquet files dlt wrote,
--   * sets the variables inner_pad and outer_pad (BLOBs: the HMAC key, zero-padded to SHA-256's
--     64-byte block, XOR 0x36 and XOR 0x5c), so the key is never in this file,
--   * sets TimeZone = 'UTC' (dates are UTC days),
-- and replaces __OUT__ with the output directory, then runs the file in one execute().
--
-- Rules, as in star_schema.py: unknown members (key -1) in every dimension; signed amount
-- (deposit +, withdrawal/transfer -, anything else NULL); one event per transaction, the greatest
-- event_id wins; dim_dates is a full calendar from the earliest account opening to the latest
-- transaction; email = HMAC-SHA256(key, normalised email) as hex; phone masked to its last two
-- digits; address reduced to city and region. Column types as Spark writes them (INTEGER keys,
-- DECIMAL(12, 2) money even when connectorx reads DECIMAL(38, 10), UTC timestamps).

CREATE OR REPLACE TEMP TABLE dim_customers AS
WITH normalised AS (
    SELECT customer_id,
           name,
           lower(regexp_replace(email, '\s+', '', 'g')) AS email_norm,
           regexp_replace(phone, '[^0-9]', '', 'g') AS phone_digits,
           split(address, chr(10))[-1] AS address_last_line
    FROM raw_customers
)
SELECT CAST(customer_id AS INTEGER) AS customer_key,
       name,
       CASE WHEN email_norm IS NULL OR email_norm = '' THEN NULL
            ELSE sha256(getvariable('outer_pad')
                        || unhex(sha256(getvariable('inner_pad') || encode(email_norm))))
       END AS email,
       CASE WHEN phone_digits = '' THEN NULL
            ELSE lpad(right(phone_digits, 2), CAST(greatest(length(phone_digits), 2) AS INTEGER), '*')
       END AS phone,
       nullif(trim(regexp_extract(address_last_line, '^([^,]+),\s*[A-Z]{2}\s+\d{5}', 1)), '') AS city,
       nullif(regexp_extract(address_last_line, '\b([A-Z]{2})\s+\d{5}(-\d{4})?\s*$', 1), '') AS region
FROM normalised
UNION ALL
SELECT -1, 'Unknown customer', NULL, NULL, NULL, NULL;

CREATE OR REPLACE TEMP TABLE dim_accounts AS
SELECT CAST(a.account_id AS INTEGER) AS account_key,
       CAST(coalesce(c.customer_id, -1) AS INTEGER) AS customer_key,
       a.account_type,
       CAST(a.opened_at AS TIMESTAMPTZ) AS opened_at,
       coalesce(CAST(strftime(a.opened_at, '%Y%m%d') AS INTEGER), -1) AS opened_date_key,
       CAST(a.balance AS DECIMAL(12, 2)) AS balance
FROM raw_accounts AS a
LEFT JOIN (SELECT customer_id FROM raw_customers) AS c ON a.customer_id = c.customer_id
UNION ALL
SELECT -1, -1, 'unknown', NULL, -1, NULL;

CREATE OR REPLACE TEMP TABLE dim_dates AS
WITH bounds AS (
    SELECT coalesce(o.first_opening, t.first_transaction) AS first_day,
           coalesce(t.last_transaction, o.last_opening) AS last_day
    FROM (SELECT min(CAST(opened_at AS DATE)) AS first_opening,
                 max(CAST(opened_at AS DATE)) AS last_opening FROM raw_accounts) AS o,
         (SELECT min(CAST("timestamp" AS DATE)) AS first_transaction,
                 max(CAST("timestamp" AS DATE)) AS last_transaction FROM raw_transactions) AS t
),
days AS (
    SELECT CAST(day AS DATE) AS date
    FROM bounds,
         generate_series(CAST(least(first_day, last_day) AS TIMESTAMP),
                         CAST(greatest(first_day, last_day) AS TIMESTAMP),
                         INTERVAL 1 DAY) AS s(day)
)
SELECT CAST(strftime(date, '%Y%m%d') AS INTEGER) AS date_key,
       date,
       CAST(year(date) AS INTEGER) AS year,
       CAST(quarter(date) AS INTEGER) AS quarter,
       CAST(month(date) AS INTEGER) AS month,
       monthname(date) AS month_name,
       CAST(day(date) AS INTEGER) AS day,
       CAST(isodow(date) AS INTEGER) AS weekday,          -- Monday = 1 ... Sunday = 7
       dayname(date) AS weekday_name,
       CAST(weekofyear(date) AS INTEGER) AS iso_week,
       isodow(date) IN (6, 7) AS is_weekend
FROM days
UNION ALL
SELECT -1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL;

CREATE OR REPLACE TEMP TABLE fact_transactions AS
WITH latest_events AS (
    SELECT transaction_id, device_type, fraud_score,
           geolocation.country AS country, geolocation.city AS city
    FROM raw_transaction_events
    QUALIFY row_number() OVER (PARTITION BY transaction_id ORDER BY event_id DESC) = 1
),
known_accounts AS (
    SELECT account_key, customer_key FROM dim_accounts WHERE account_key <> -1
)
SELECT CAST(t.transaction_id AS INTEGER) AS transaction_id,
       coalesce(CAST(strftime(CAST(t."timestamp" AS DATE), '%Y%m%d') AS INTEGER), -1) AS date_key,
       coalesce(a.account_key, -1) AS account_key,
       coalesce(a.customer_key, -1) AS customer_key,
       CAST(t.amount AS DECIMAL(12, 2)) AS amount,
       CASE WHEN t.transaction_type = 'deposit' THEN CAST(t.amount AS DECIMAL(12, 2))
            WHEN t.transaction_type IN ('withdrawal', 'transfer') THEN -CAST(t.amount AS DECIMAL(12, 2))
            ELSE NULL
       END AS signed_amount,
       t.transaction_type,
       CAST(t."timestamp" AS TIMESTAMPTZ) AS transaction_at,
       e.device_type,
       e.fraud_score,
       e.country,
       e.city
FROM raw_transactions AS t
LEFT JOIN known_accounts AS a ON t.account_id = a.account_key
LEFT JOIN latest_events AS e ON t.transaction_id = e.transaction_id;

COPY dim_customers TO '__OUT__/dim_customers.parquet' (FORMAT parquet);
COPY dim_accounts TO '__OUT__/dim_accounts.parquet' (FORMAT parquet);
COPY dim_dates TO '__OUT__/dim_dates.parquet' (FORMAT parquet);
COPY fact_transactions TO '__OUT__/fact_transactions.parquet' (FORMAT parquet);
