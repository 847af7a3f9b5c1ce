-- When a periodic job of Usage last ran, across replicas and restarts (the overage check against Stripe's meters): a
-- replica runs it when it is due and no other holds the job's lock.
CREATE TABLE usage_job_runs (
    job         text        NOT NULL,
    last_run_at timestamptz NOT NULL,
    CONSTRAINT pk_usage_job_runs PRIMARY KEY (job)
);
