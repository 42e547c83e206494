-- The job ledger: jobs, their shards and items, and the worker registry.
-- State changes that touch several rows live in functions so that each ledger
-- operation is one statement (one round trip, one implicit transaction).
-- Lock order everywhere is shards before jobs, so concurrent operations cannot deadlock.

CREATE TABLE jobs (
    id                    bigserial PRIMARY KEY,
    type                  text NOT NULL,
    parameters            jsonb NOT NULL DEFAULT '{}'::jsonb,
    model                 text,
    input_location        text NOT NULL,
    output_location       text NOT NULL,
    state                 text NOT NULL DEFAULT 'pending'
                          CHECK (state IN ('pending', 'running', 'paused', 'cancelled',
                                           'completed', 'completed_with_failures')),
    priority              integer NOT NULL DEFAULT 0,
    max_attempts          integer NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
    shard_count           integer NOT NULL DEFAULT 0,
    item_count            bigint  NOT NULL DEFAULT 0,
    shards_done           integer NOT NULL DEFAULT 0,
    shards_failed         integer NOT NULL DEFAULT 0,
    items_done            bigint  NOT NULL DEFAULT 0,
    items_failed          bigint  NOT NULL DEFAULT 0,
    -- Completions refused because the caller no longer held the lease (late or duplicate).
    rejected_completions  bigint  NOT NULL DEFAULT 0,
    created_at            timestamptz NOT NULL DEFAULT now(),
    started_at            timestamptz,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    finished_at           timestamptz
);

CREATE TABLE shards (
    job_id            bigint  NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    shard_index       integer NOT NULL,
    -- Copied from the job so the claim is a single ordered index scan without a join.
    priority          integer NOT NULL,
    first_item        bigint  NOT NULL,
    last_item         bigint  NOT NULL,
    state             text    NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'leased', 'done', 'failed', 'paused', 'cancelled')),
    attempts          integer NOT NULL DEFAULT 0,
    lease_owner       text,
    -- Kept after completion so a repeated completion is recognised as a duplicate.
    lease_token       uuid,
    lease_expires_at  timestamptz,
    next_eligible_at  timestamptz NOT NULL DEFAULT '-infinity',
    last_error        text,
    result_summary    jsonb,
    items_ok          integer NOT NULL DEFAULT 0,
    items_failed      integer NOT NULL DEFAULT 0,
    completed_at      timestamptz,
    PRIMARY KEY (job_id, shard_index),
    CHECK (first_item <= last_item)
);

-- Claim order: priority, then job age (ids are issued in creation order), then shard index.
CREATE INDEX shards_claim_order ON shards (priority DESC, job_id, shard_index) WHERE state = 'pending';
CREATE INDEX shards_lease_expiry ON shards (lease_expires_at) WHERE state = 'leased';
CREATE INDEX shards_completed_at ON shards (completed_at) WHERE completed_at IS NOT NULL;

CREATE TABLE items (
    job_id           bigint  NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    ordinal          bigint  NOT NULL,
    shard_index      integer NOT NULL,
    source_id        text    NOT NULL,
    path             text    NOT NULL,
    label            text,
    caption          text,
    state            text    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    output_location  text,
    error            text,
    PRIMARY KEY (job_id, ordinal)
);

CREATE INDEX items_failures ON items (job_id, ordinal) WHERE state = 'failed';

CREATE TABLE workers (
    id                   text PRIMARY KEY,
    host                 text NOT NULL,
    capabilities         jsonb NOT NULL DEFAULT '{}'::jsonb,
    state                text NOT NULL DEFAULT 'idle'
                         CHECK (state IN ('idle', 'busy', 'draining', 'offline')),
    current_job_id       bigint,
    current_shard_index  integer,
    items_done           bigint NOT NULL DEFAULT 0,
    items_failed         bigint NOT NULL DEFAULT 0,
    images_per_second    double precision NOT NULL DEFAULT 0,
    memory_bytes         bigint NOT NULL DEFAULT 0,
    registered_at        timestamptz NOT NULL DEFAULT now(),
    last_heartbeat       timestamptz NOT NULL DEFAULT now()
);

-- Marks a job finished once every shard is done or failed. The caller holds the job row lock
-- (it has just updated the counters), so two completers cannot both miss the last shard.
CREATE FUNCTION vtp_finish_job_if_complete(p_job bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE jobs
       SET state = CASE WHEN shards_failed > 0 OR items_failed > 0
                        THEN 'completed_with_failures' ELSE 'completed' END,
           finished_at = now(), updated_at = now()
     WHERE id = p_job
       AND state IN ('pending', 'running', 'paused')
       AND shards_done + shards_failed = shard_count;
$$;

-- Gives a leased shard (already locked by the caller) back to the queue with exponential
-- backoff, or fails it for good once it has used up the job's attempts.
CREATE FUNCTION vtp_requeue_or_fail(p_job bigint, p_shard integer, p_error text,
                                    p_backoff_base double precision, p_backoff_cap double precision)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_attempts integer;
    v_max      integer;
    v_first    bigint;
    v_last     bigint;
    v_items    bigint;
BEGIN
    SELECT s.attempts, j.max_attempts, s.first_item, s.last_item
      INTO v_attempts, v_max, v_first, v_last
      FROM shards s JOIN jobs j ON j.id = s.job_id
     WHERE s.job_id = p_job AND s.shard_index = p_shard;
    IF v_attempts >= v_max THEN
        UPDATE items
           SET state = 'failed',
               error = format('shard failed after %s attempts: %s', v_attempts, p_error)
         WHERE job_id = p_job AND ordinal BETWEEN v_first AND v_last AND state = 'pending';
        GET DIAGNOSTICS v_items = ROW_COUNT;
        UPDATE shards
           SET state = 'failed', last_error = p_error, lease_expires_at = NULL,
               items_failed = items_failed + v_items, completed_at = now()
         WHERE job_id = p_job AND shard_index = p_shard;
        UPDATE jobs
           SET shards_failed = shards_failed + 1, items_failed = items_failed + v_items, updated_at = now()
         WHERE id = p_job;
        PERFORM vtp_finish_job_if_complete(p_job);
        RETURN 'failed';
    END IF;
    UPDATE shards
       SET state = 'pending', last_error = p_error, lease_expires_at = NULL,
           next_eligible_at = now() + make_interval(
               secs => least(p_backoff_cap, p_backoff_base * power(2, greatest(v_attempts - 1, 0))))
     WHERE job_id = p_job AND shard_index = p_shard;
    RETURN 'requeued';
END;
$$;

-- Records a shard's results if, and only if, p_token is still the shard's live lease.
-- Returns 'applied', 'duplicate' (this lease already completed), 'lease_lost' or 'unknown_shard'.
CREATE FUNCTION vtp_complete_shard(p_job bigint, p_shard integer, p_token uuid,
                                   p_results jsonb, p_summary jsonb)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_state   text;
    v_token   uuid;
    v_first   bigint;
    v_last    bigint;
    v_ok      bigint;
    v_failed  bigint;
    v_missing bigint;
BEGIN
    SELECT state, lease_token, first_item, last_item INTO v_state, v_token, v_first, v_last
      FROM shards WHERE job_id = p_job AND shard_index = p_shard FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'unknown_shard';
    END IF;
    IF v_state <> 'leased' OR v_token IS DISTINCT FROM p_token THEN
        UPDATE jobs SET rejected_completions = rejected_completions + 1 WHERE id = p_job;
        IF v_state = 'done' AND v_token = p_token THEN
            RETURN 'duplicate';
        END IF;
        RETURN 'lease_lost';
    END IF;

    WITH results AS (
        SELECT * FROM jsonb_to_recordset(p_results) AS r(ordinal bigint, ok boolean, output text, error text)
    ), updated AS (
        UPDATE items i
           SET state = CASE WHEN r.ok THEN 'done' ELSE 'failed' END,
               output_location = CASE WHEN r.ok THEN r.output END,
               error = CASE WHEN r.ok THEN NULL ELSE coalesce(r.error, 'unspecified error') END
          FROM results r
         WHERE i.job_id = p_job AND i.ordinal = r.ordinal
           AND i.ordinal BETWEEN v_first AND v_last AND i.state = 'pending'
        RETURNING i.state
    )
    SELECT count(*) FILTER (WHERE state = 'done'), count(*) FILTER (WHERE state = 'failed')
      INTO v_ok, v_failed FROM updated;

    -- A completed shard resolves every item: anything the worker left out is a failure.
    UPDATE items SET state = 'failed', error = 'worker reported no result for this item'
     WHERE job_id = p_job AND ordinal BETWEEN v_first AND v_last AND state = 'pending';
    GET DIAGNOSTICS v_missing = ROW_COUNT;
    v_failed := v_failed + v_missing;

    UPDATE shards
       SET state = 'done', lease_expires_at = NULL, completed_at = now(), result_summary = p_summary,
           items_ok = items_ok + v_ok, items_failed = items_failed + v_failed
     WHERE job_id = p_job AND shard_index = p_shard;
    UPDATE jobs
       SET shards_done = shards_done + 1, items_done = items_done + v_ok,
           items_failed = items_failed + v_failed, updated_at = now()
     WHERE id = p_job;
    PERFORM vtp_finish_job_if_complete(p_job);
    RETURN 'applied';
END;
$$;

-- A worker gives up on its lease (for example the shard's input is unreadable).
CREATE FUNCTION vtp_fail_shard(p_job bigint, p_shard integer, p_token uuid, p_error text,
                               p_backoff_base double precision, p_backoff_cap double precision)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
    v_token uuid;
BEGIN
    SELECT state, lease_token INTO v_state, v_token
      FROM shards WHERE job_id = p_job AND shard_index = p_shard FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'unknown_shard';
    END IF;
    IF v_state <> 'leased' OR v_token IS DISTINCT FROM p_token THEN
        UPDATE jobs SET rejected_completions = rejected_completions + 1 WHERE id = p_job;
        RETURN 'lease_lost';
    END IF;
    RETURN vtp_requeue_or_fail(p_job, p_shard, p_error, p_backoff_base, p_backoff_cap);
END;
$$;

-- Returns expired leases to the queue (or fails them). Rows another session holds are skipped,
-- so concurrent reapers never wait on each other or on a completing worker.
CREATE FUNCTION vtp_release_expired_leases(p_backoff_base double precision, p_backoff_cap double precision)
RETURNS TABLE (job_id bigint, shard_index integer, outcome text)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT s.job_id, s.shard_index, s.lease_owner FROM shards s
         WHERE s.state = 'leased' AND s.lease_expires_at < now()
         ORDER BY s.job_id, s.shard_index
           FOR UPDATE SKIP LOCKED
    LOOP
        job_id := r.job_id;
        shard_index := r.shard_index;
        outcome := vtp_requeue_or_fail(r.job_id, r.shard_index,
                                       format('lease expired (owner %s)', coalesce(r.lease_owner, 'unknown')),
                                       p_backoff_base, p_backoff_cap);
        RETURN NEXT;
    END LOOP;
END;
$$;

-- Job control functions return 'ok', 'not_found', or the job's state when it does not allow the change.
CREATE FUNCTION vtp_cancel_job(p_job bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
BEGIN
    -- Leased shards are cancelled too: their lease tokens stop matching, so late results are rejected.
    UPDATE shards SET state = 'cancelled', lease_expires_at = NULL
     WHERE job_id = p_job AND state IN ('pending', 'leased', 'paused');
    UPDATE jobs SET state = 'cancelled', finished_at = now(), updated_at = now()
     WHERE id = p_job AND state IN ('pending', 'running', 'paused')
    RETURNING state INTO v_state;
    IF FOUND THEN
        RETURN 'ok';
    END IF;
    SELECT state INTO v_state FROM jobs WHERE id = p_job;
    RETURN coalesce(v_state, 'not_found');
END;
$$;

CREATE FUNCTION vtp_pause_job(p_job bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
BEGIN
    UPDATE shards SET state = 'paused' WHERE job_id = p_job AND state = 'pending';
    UPDATE jobs SET state = 'paused', updated_at = now()
     WHERE id = p_job AND state IN ('pending', 'running');
    IF FOUND THEN
        RETURN 'ok';
    END IF;
    SELECT state INTO v_state FROM jobs WHERE id = p_job;
    RETURN coalesce(v_state, 'not_found');
END;
$$;

CREATE FUNCTION vtp_resume_job(p_job bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
BEGIN
    UPDATE shards SET state = 'pending' WHERE job_id = p_job AND state = 'paused';
    UPDATE jobs SET state = CASE WHEN started_at IS NULL THEN 'pending' ELSE 'running' END, updated_at = now()
     WHERE id = p_job AND state = 'paused';
    IF FOUND THEN
        PERFORM pg_notify('vtp_work', p_job::text);
        PERFORM vtp_finish_job_if_complete(p_job);
        RETURN 'ok';
    END IF;
    SELECT state INTO v_state FROM jobs WHERE id = p_job;
    RETURN coalesce(v_state, 'not_found');
END;
$$;

-- Puts failed shards, and done shards that have failed items, back in the queue with fresh
-- attempts. Only the failed items are reset, so a retried shard redoes only those.
-- Returns the number of items reset, or NULL (with the job state in p_state) when not allowed.
CREATE FUNCTION vtp_retry_failed(p_job bigint, OUT items_reset bigint, OUT job_state text)
LANGUAGE plpgsql AS $$
DECLARE
    v_failed_shards integer;
    v_done_shards   integer;
    v_items         bigint;
BEGIN
    SELECT state INTO job_state FROM jobs WHERE id = p_job;
    IF NOT FOUND THEN
        job_state := 'not_found';
        RETURN;
    END IF;
    IF job_state NOT IN ('pending', 'running', 'completed_with_failures') THEN
        RETURN;
    END IF;
    PERFORM 1 FROM shards
      WHERE job_id = p_job AND (state = 'failed' OR (state = 'done' AND items_failed > 0))
      FOR UPDATE;
    SELECT count(*) FILTER (WHERE state = 'failed'),
           count(*) FILTER (WHERE state = 'done'),
           coalesce(sum(items_failed), 0)
      INTO v_failed_shards, v_done_shards, v_items
      FROM shards
     WHERE job_id = p_job AND (state = 'failed' OR (state = 'done' AND items_failed > 0));
    UPDATE shards
       SET state = 'pending', attempts = 0, next_eligible_at = '-infinity', lease_owner = NULL,
           lease_token = NULL, lease_expires_at = NULL, completed_at = NULL, items_failed = 0
     WHERE job_id = p_job AND (state = 'failed' OR (state = 'done' AND items_failed > 0));
    UPDATE items SET state = 'pending', error = NULL WHERE job_id = p_job AND state = 'failed';
    GET DIAGNOSTICS items_reset = ROW_COUNT;
    UPDATE jobs
       SET shards_failed = shards_failed - v_failed_shards,
           shards_done = shards_done - v_done_shards,
           items_failed = items_failed - v_items,
           state = CASE WHEN v_failed_shards + v_done_shards > 0 AND state = 'completed_with_failures'
                        THEN 'running' ELSE state END,
           finished_at = CASE WHEN v_failed_shards + v_done_shards > 0 THEN NULL ELSE finished_at END,
           updated_at = now()
     WHERE id = p_job
    RETURNING state INTO job_state;
    IF items_reset > 0 THEN
        PERFORM pg_notify('vtp_work', p_job::text);
    END IF;
END;
$$;
