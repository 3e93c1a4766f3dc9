-- casebridge store, version 2: claims that do not scan the backlog.
-- is_head marks the one job of each order key that may run next: its running job if any,
-- else its lowest-id pending job. Jobs without an order key are always heads. Enqueue,
-- finish (done/retry/dead) and replay keep it right in the same transaction, so a claim is
-- one probe of a partial index over due pending heads plus one over expired leases.

ALTER TABLE jobs ADD COLUMN is_head INTEGER NOT NULL DEFAULT 0;

UPDATE jobs SET is_head = 1 WHERE order_key = '';

-- An existing database: each order key's running job, or else its lowest pending one.
UPDATE jobs SET is_head = 1
WHERE order_key <> '' AND state IN ('pending', 'running')
  AND id = (
      SELECT o.id FROM jobs AS o
      WHERE o.order_key = jobs.order_key AND o.state IN ('pending', 'running')
      ORDER BY CASE o.state WHEN 'running' THEN 0 ELSE 1 END, o.id
      LIMIT 1);

CREATE INDEX jobs_head_due ON jobs (run_at, id) WHERE state = 'pending' AND is_head = 1;
CREATE INDEX jobs_head_due_kind ON jobs (kind, run_at, id)
    WHERE state = 'pending' AND is_head = 1;
CREATE INDEX jobs_running_lease ON jobs (lease_until) WHERE state = 'running';
