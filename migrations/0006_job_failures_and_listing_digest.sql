-- Job-level failures: when nothing of a job can run (its model cannot load, its output directory
-- cannot be written, its parameters are invalid), the job fails at once with one message instead
-- of every shard spending its attempts on the same error and every item being failed with it.
--
-- A failed job keeps its items as they were (no item is failed) and parks its unfinished shards
-- as 'paused'; `error` says why. vtp_retry_failed starts it again (after the cause was fixed), and
-- so does re-running the `vtp run` command that created it.
ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('pending', 'running', 'paused', 'cancelled', 'completed', 'completed_with_failures', 'failed'));
ALTER TABLE jobs ADD COLUMN error text;

-- Locks shard (p_job, p_shard) and says whether p_token is its live lease: 'held', 'lease_lost'
-- or 'unknown_shard'. The operations on a lease that a worker hands in start with it.
CREATE FUNCTION vtp_lock_lease(p_job bigint, p_shard integer, p_token uuid) RETURNS text
LANGUAGE plpgsql AS $$
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
        RETURN 'lease_lost';
    END IF;
    RETURN 'held';
END;
$$;

CREATE OR REPLACE FUNCTION vtp_fail_shard(p_job bigint, p_shard integer, p_token uuid, p_error text,
                                          p_backoff_base double precision, p_backoff_cap double precision)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_lease text := vtp_lock_lease(p_job, p_shard, p_token);
BEGIN
    IF v_lease = 'lease_lost' THEN
        UPDATE jobs SET rejected_completions = rejected_completions + 1 WHERE id = p_job;
    END IF;
    IF v_lease <> 'held' THEN
        RETURN v_lease;
    END IF;
    RETURN vtp_requeue_or_fail(p_job, p_shard, p_error, p_backoff_base, p_backoff_cap);
END;
$$;

CREATE OR REPLACE FUNCTION vtp_hand_back_shard(p_job bigint, p_shard integer, p_token uuid, p_reason text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_lease text := vtp_lock_lease(p_job, p_shard, p_token);
BEGIN
    IF v_lease <> 'held' THEN
        RETURN v_lease;
    END IF;
    UPDATE shards
       SET state = 'pending', lease_expires_at = NULL, next_eligible_at = '-infinity',
           attempts = greatest(attempts - 1, 0)
     WHERE job_id = p_job AND shard_index = p_shard;
    RETURN 'requeued';
END;
$$;

-- Fails job p_job because the holder of shard p_shard under p_token found that nothing of it can
-- run. The job's pending and leased shards are parked (leased ones get their attempt back, and
-- their lease tokens stop matching, so late results are rejected). Returns 'job_failed' (also
-- when the job had already failed: another worker found the same), 'lease_lost' or 'unknown_shard'.
CREATE FUNCTION vtp_fail_job(p_job bigint, p_shard integer, p_token uuid, p_error text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_lease text;
BEGIN
    -- Every shard this may touch, its own included, in index order before the job, like every
    -- other multi-shard operation: two workers failing the same job at once then queue up
    -- instead of deadlocking.
    PERFORM 1 FROM shards WHERE job_id = p_job AND (state IN ('pending', 'leased') OR shard_index = p_shard)
      ORDER BY shard_index FOR UPDATE;
    v_lease := vtp_lock_lease(p_job, p_shard, p_token);
    IF v_lease = 'lease_lost' THEN
        UPDATE jobs SET rejected_completions = rejected_completions + 1 WHERE id = p_job;
    END IF;
    IF v_lease <> 'held' THEN
        RETURN v_lease;
    END IF;
    UPDATE shards
       SET state = 'paused', lease_expires_at = NULL, next_eligible_at = '-infinity',
           attempts = CASE WHEN state = 'leased' THEN greatest(attempts - 1, 0) ELSE attempts END,
           last_error = CASE WHEN shard_index = p_shard THEN p_error ELSE last_error END
     WHERE job_id = p_job AND state IN ('pending', 'leased');
    UPDATE jobs SET state = 'failed', error = p_error, finished_at = now(), updated_at = now()
     WHERE id = p_job AND state IN ('pending', 'running', 'paused');
    RETURN 'job_failed';
END;
$$;

-- A failed job can be cancelled like an unfinished one.
CREATE OR REPLACE FUNCTION vtp_cancel_job(p_job bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
BEGIN
    -- Leased shards are cancelled too: their lease tokens stop matching, so late results are rejected.
    UPDATE shards SET state = 'cancelled', lease_expires_at = NULL
     WHERE job_id = p_job AND state IN ('pending', 'leased', 'paused');
    UPDATE jobs SET state = 'cancelled', finished_at = now(), updated_at = now()
     WHERE id = p_job AND state IN ('pending', 'running', 'paused', 'failed')
    RETURNING state INTO v_state;
    IF FOUND THEN
        PERFORM pg_notify('vtp_work', p_job::text);
        RETURN 'ok';
    END IF;
    SELECT state INTO v_state FROM jobs WHERE id = p_job;
    RETURN coalesce(v_state, 'not_found');
END;
$$;

-- Retrying also restarts a failed job: its parked shards go back to the queue with fresh
-- attempts and its error is cleared. items_reset counts the items that will run again.
CREATE OR REPLACE FUNCTION vtp_retry_failed(p_job bigint, OUT items_reset bigint, OUT job_state text)
LANGUAGE plpgsql AS $$
DECLARE
    v_failed_shards integer;
    v_done_shards   integer;
    v_items_failed  bigint;
    v_items_ok      bigint;
    v_shards        integer[];
    v_parked        bigint := 0;
    v_job_failed    boolean;
BEGIN
    SELECT state INTO job_state FROM jobs WHERE id = p_job;
    IF NOT FOUND THEN
        job_state := 'not_found';
        RETURN;
    END IF;
    IF job_state NOT IN ('pending', 'running', 'completed_with_failures', 'failed') THEN
        RETURN;
    END IF;
    v_job_failed := job_state = 'failed';
    PERFORM 1 FROM shards
      WHERE job_id = p_job AND (state = 'failed' OR (state = 'done' AND items_failed > 0)
                                OR (v_job_failed AND state = 'paused'))
      ORDER BY shard_index
      FOR UPDATE;
    SELECT coalesce(array_agg(shard_index), '{}'),
           count(*) FILTER (WHERE state = 'failed'),
           count(*) FILTER (WHERE state = 'done'),
           coalesce(sum(items_failed), 0),
           coalesce(sum(items_ok), 0)
      INTO v_shards, v_failed_shards, v_done_shards, v_items_failed, v_items_ok
      FROM shards
     WHERE job_id = p_job AND (state = 'failed' OR (state = 'done' AND items_failed > 0));
    IF v_job_failed THEN
        SELECT coalesce(sum(last_item - first_item + 1), 0) INTO v_parked
          FROM shards WHERE job_id = p_job AND state = 'paused';
        UPDATE shards SET state = 'pending', attempts = 0, next_eligible_at = '-infinity'
         WHERE job_id = p_job AND state = 'paused';
    END IF;
    UPDATE shards
       SET state = 'pending', attempts = 0, next_eligible_at = '-infinity', lease_owner = NULL,
           lease_token = NULL, lease_expires_at = NULL, completed_at = NULL, items_failed = 0, items_ok = 0
     WHERE job_id = p_job AND shard_index = ANY (v_shards);
    UPDATE items
       SET state = 'pending', error = NULL, output_location = NULL
     WHERE job_id = p_job AND shard_index = ANY (v_shards) AND state <> 'pending';
    GET DIAGNOSTICS items_reset = ROW_COUNT;
    items_reset := items_reset + v_parked;
    UPDATE jobs
       SET shards_failed = shards_failed - v_failed_shards,
           shards_done = shards_done - v_done_shards,
           items_failed = items_failed - v_items_failed,
           items_done = items_done - v_items_ok,
           state = CASE WHEN v_job_failed THEN CASE WHEN started_at IS NULL THEN 'pending' ELSE 'running' END
                        WHEN v_failed_shards + v_done_shards > 0 AND state = 'completed_with_failures' THEN 'running'
                        ELSE state END,
           error = NULL,
           finished_at = CASE WHEN v_job_failed OR v_failed_shards + v_done_shards > 0 THEN NULL ELSE finished_at END,
           updated_at = now()
     WHERE id = p_job
    RETURNING state INTO job_state;
    IF items_reset > 0 THEN
        PERFORM pg_notify('vtp_work', p_job::text);
    END IF;
    -- A failed job whose every shard had finished before it failed is complete now.
    PERFORM vtp_finish_job_if_complete(p_job);
    SELECT state INTO job_state FROM jobs WHERE id = p_job;
END;
$$;

-- The fingerprint of the input listing a job's items came from (last updated by `vtp run
-- --update`), so a re-run can tell that its input changed without reading every item back.
ALTER TABLE jobs ADD COLUMN listing_digest text;

-- Items a worker reported done in the shard it is running, refreshed with its row on every
-- heartbeat, so `vtp status` and `vtp top` move per batch rather than per shard.
ALTER TABLE workers ADD COLUMN items_in_progress bigint NOT NULL DEFAULT 0;
