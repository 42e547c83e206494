-- The ledger grows with shards, not items (issue 17): a shard's items live in a shard manifest
-- file beside the job's outputs (`<output>/.vtp/shards/<job>/<shard>.items`, written at enqueue,
-- read by the coordinator's claim: see Sources/VTPQueue/ShardManifest.swift), and the database
-- keeps jobs, shards (first/last ordinal: the item count is last - first + 1) and one row per
-- FAILED item. Success is implied: a shard in state 'done' holds every item of its range that
-- has no failure row. Per-item output locations are not stored: each shard's summary file
-- (written by its worker) names the file it wrote and its ids sidecar maps rows to source ids.
--
-- failed_items.source_id and .path are filled where the ledger knows them without a file
-- (listing failures, rows moved from `items`); NULL means "read it from the shard manifest".
-- shard_index -1 marks listing failures, as in 0003: no claim, completion or retry touches them.
CREATE TABLE failed_items (
    job_id       bigint  NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    ordinal      bigint  NOT NULL,
    shard_index  integer NOT NULL,
    source_id    text,
    path         text,
    error        text    NOT NULL,
    PRIMARY KEY (job_id, ordinal)
);
CREATE INDEX failed_items_by_shard ON failed_items (job_id, shard_index);

-- A job is 'listing' while its enqueue writes its shard manifests: invisible to claims until one
-- transaction inserts its shards and makes it 'pending', so an enqueue that dies part-way leaves
-- a listing job to discard (and its manifest folder), never a half-enqueued one to run.
ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('listing', 'pending', 'running', 'paused', 'cancelled', 'completed',
                     'completed_with_failures', 'failed'));

-- Moving existing ledgers takes two steps, since SQL cannot write files. This migration copies
-- the failed items (their state and errors are all the ledger needs of items from now on) and
-- flags the jobs whose items are still rows; `Ledger.moveItemRowsToManifests()` (run by every
-- coordinator and `vtp run` at startup) writes their shard manifests, then deletes their rows
-- and clears the flag in one transaction. Claims skip flagged jobs until then.
ALTER TABLE jobs ADD COLUMN item_rows boolean NOT NULL DEFAULT false;
UPDATE jobs j SET item_rows = true WHERE EXISTS (SELECT 1 FROM items i WHERE i.job_id = j.id);
INSERT INTO failed_items (job_id, ordinal, shard_index, source_id, path, error)
SELECT job_id, ordinal, shard_index, source_id, path, coalesce(error, 'unspecified error')
  FROM items WHERE state = 'failed';
ALTER TABLE items DROP CONSTRAINT items_listing_failures_are_failed;

-- A failed shard fails every item it had not failed already (one row each: failed shards are rare).
CREATE OR REPLACE FUNCTION vtp_requeue_or_fail(p_job bigint, p_shard integer, p_error text,
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
        INSERT INTO failed_items (job_id, ordinal, shard_index, error)
        SELECT p_job, g, p_shard, format('shard failed after %s attempts: %s', v_attempts, p_error)
          FROM generate_series(v_first, v_last) AS g
        ON CONFLICT (job_id, ordinal) DO NOTHING;
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

-- A completion records a failure row for each item the worker failed or left out; every other
-- item of the range is done. Items already failed (isolated crashes) stay as they are.
CREATE OR REPLACE FUNCTION vtp_complete_shard(p_job bigint, p_shard integer, p_token uuid,
                                              p_results jsonb, p_summary jsonb)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_state   text;
    v_token   uuid;
    v_first   bigint;
    v_last    bigint;
    v_failed  bigint;
    v_total   bigint;
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

    -- A completed shard resolves every item: anything the worker left out is a failure.
    INSERT INTO failed_items (job_id, ordinal, shard_index, error)
    SELECT p_job, g, p_shard,
           CASE WHEN r.ordinal IS NULL THEN 'worker reported no result for this item'
                ELSE coalesce(r.error, 'unspecified error') END
      FROM generate_series(v_first, v_last) AS g
      LEFT JOIN (SELECT DISTINCT ON (x.ordinal) x.ordinal, x.ok, x.error
                   FROM jsonb_to_recordset(p_results) AS x(ordinal bigint, ok boolean, error text)
                  ORDER BY x.ordinal, x.ok) r ON r.ordinal = g
     WHERE r.ordinal IS NULL OR NOT r.ok
    ON CONFLICT (job_id, ordinal) DO NOTHING;
    GET DIAGNOSTICS v_failed = ROW_COUNT;

    SELECT count(*) INTO v_total FROM failed_items WHERE job_id = p_job AND shard_index = p_shard;
    UPDATE shards
       SET state = 'done', lease_expires_at = NULL, completed_at = now(), result_summary = p_summary,
           items_ok = (v_last - v_first + 1) - v_total, items_failed = items_failed + v_failed
     WHERE job_id = p_job AND shard_index = p_shard;
    UPDATE jobs
       SET shards_done = shards_done + 1, items_done = items_done + (v_last - v_first + 1) - v_total,
           items_failed = items_failed + v_failed, updated_at = now()
     WHERE id = p_job;
    PERFORM vtp_finish_job_if_complete(p_job);
    RETURN 'applied';
END;
$$;

-- Crash isolation (0005) with failure rows: the item an isolated run had in hand when its worker
-- crashed gets a failure row, and later claims hand it out as excluded.
CREATE OR REPLACE FUNCTION vtp_release_leases(p_leases jsonb, p_reason text,
                                              p_backoff_base double precision, p_backoff_cap double precision)
RETURNS TABLE (job_id bigint, shard_index integer, lease_token uuid, outcome text)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_added bigint;
BEGIN
    FOR r IN
        SELECT s.job_id, s.shard_index, s.lease_token, s.isolated, s.isolation_refunds,
               s.first_item, s.last_item, l.item
          FROM shards s
          JOIN jsonb_to_recordset(p_leases) AS l(job bigint, shard integer, token uuid, item bigint)
            ON s.job_id = l.job AND s.shard_index = l.shard AND s.lease_token = l.token
         WHERE s.state = 'leased'
         ORDER BY s.job_id, s.shard_index
           FOR UPDATE OF s
    LOOP
        job_id := r.job_id;
        shard_index := r.shard_index;
        lease_token := r.lease_token;
        IF r.isolated AND r.item BETWEEN r.first_item AND r.last_item THEN
            INSERT INTO failed_items (job_id, ordinal, shard_index, error)
            VALUES (r.job_id, r.item, r.shard_index,
                    format('%s while processing this item, run on its own after an earlier abnormal end '
                           'of its shard; the item is not retried (vtp job retry runs it again)', p_reason))
            ON CONFLICT DO NOTHING;
            GET DIAGNOSTICS v_added = ROW_COUNT;
            IF v_added > 0 THEN
                UPDATE shards s SET items_failed = s.items_failed + 1
                 WHERE s.job_id = r.job_id AND s.shard_index = r.shard_index;
                UPDATE jobs j SET items_failed = j.items_failed + 1, updated_at = now() WHERE j.id = r.job_id;
            END IF;
            IF r.isolation_refunds < 2 * (r.last_item - r.first_item + 1) THEN
                UPDATE shards s SET attempts = greatest(s.attempts - 1, 0), isolation_refunds = s.isolation_refunds + 1
                 WHERE s.job_id = r.job_id AND s.shard_index = r.shard_index;
            END IF;
        END IF;
        UPDATE shards s SET isolated = true WHERE s.job_id = r.job_id AND s.shard_index = r.shard_index;
        outcome := vtp_requeue_or_fail(r.job_id, r.shard_index, p_reason, p_backoff_base, p_backoff_cap);
        RETURN NEXT;
    END LOOP;
END;
$$;

-- Retry (whole shards, as 0002 decided) drops the failure rows of the shards it re-opens;
-- items_reset counts their items.
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
           coalesce(sum(items_ok), 0),
           coalesce(sum(last_item - first_item + 1), 0)
      INTO v_shards, v_failed_shards, v_done_shards, v_items_failed, v_items_ok, items_reset
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
    DELETE FROM failed_items WHERE job_id = p_job AND shard_index = ANY (v_shards);
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
