-- Retrying a job's failures re-runs each affected shard as a whole.
--
-- A shard's outputs are files written per shard, and a re-run rewrites them from the items it is
-- given. 0001 re-queued only the failed items of a shard that was done with some per-item
-- failures, so the re-run would have rewritten that shard's files without its good rows while
-- the ledger still recorded them as written. Now every item of such a shard goes back to pending
-- (its counters with it), and the re-run reproduces the complete shard.
CREATE OR REPLACE FUNCTION vtp_retry_failed(p_job bigint, OUT items_reset bigint, OUT job_state text)
LANGUAGE plpgsql AS $$
DECLARE
    v_failed_shards integer;
    v_done_shards   integer;
    v_items_failed  bigint;
    v_items_ok      bigint;
    v_shards        integer[];
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
    SELECT coalesce(array_agg(shard_index), '{}'),
           count(*) FILTER (WHERE state = 'failed'),
           count(*) FILTER (WHERE state = 'done'),
           coalesce(sum(items_failed), 0),
           coalesce(sum(items_ok), 0)
      INTO v_shards, v_failed_shards, v_done_shards, v_items_failed, v_items_ok
      FROM shards
     WHERE job_id = p_job AND (state = 'failed' OR (state = 'done' AND items_failed > 0));
    UPDATE shards
       SET state = 'pending', attempts = 0, next_eligible_at = '-infinity', lease_owner = NULL,
           lease_token = NULL, lease_expires_at = NULL, completed_at = NULL, items_failed = 0, items_ok = 0
     WHERE job_id = p_job AND shard_index = ANY (v_shards);
    UPDATE items
       SET state = 'pending', error = NULL, output_location = NULL
     WHERE job_id = p_job AND shard_index = ANY (v_shards) AND state <> 'pending';
    GET DIAGNOSTICS items_reset = ROW_COUNT;
    UPDATE jobs
       SET shards_failed = shards_failed - v_failed_shards,
           shards_done = shards_done - v_done_shards,
           items_failed = items_failed - v_items_failed,
           items_done = items_done - v_items_ok,
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
