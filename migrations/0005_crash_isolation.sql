-- Crash isolation: a shard whose worker ended abnormally runs one item at a time, and the item a
-- worker crashed on is failed on its own while the rest of its shard is written.
--
-- A worker that dies holding a shard (crash, kill, silence past the liveness limit, lease expiry)
-- may have died of one of its items. The shard is flagged isolated: its next runs process the
-- items one by one, each started only after the coordinator noted it as the item in hand. A worker
-- dying of a fatal signal (SIGSEGV, SIGABRT, ...) says so before it goes; the coordinator then
-- releases its leases naming the item each isolated run had in hand. That item is failed with the
-- reason, the shard's later runs leave it out (claims return it as excluded), and the attempt is
-- given back: the run found what it was looking for. The give-back is bounded (twice the shard's
-- size per shard), so no shard can loop for ever. Ends without a crash report (SIGKILL, silence, a
-- restart, an expired lease) blame no item: an operator or the OOM killer can stop a worker on any
-- item, and only the signal tells a crash from a kill.
ALTER TABLE shards
    ADD COLUMN isolated boolean NOT NULL DEFAULT false,
    ADD COLUMN isolation_refunds integer NOT NULL DEFAULT 0;

DROP FUNCTION vtp_release_leases(jsonb, text, double precision, double precision);
CREATE FUNCTION vtp_release_leases(p_leases jsonb, p_reason text,
                                   p_backoff_base double precision, p_backoff_cap double precision)
RETURNS TABLE (job_id bigint, shard_index integer, lease_token uuid, outcome text)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
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
            UPDATE items i
               SET state = 'failed',
                   error = format('%s while processing this item, run on its own after an earlier abnormal end '
                                  'of its shard; the item is not retried (vtp job retry runs it again)', p_reason)
             WHERE i.job_id = r.job_id AND i.ordinal = r.item AND i.state = 'pending';
            IF FOUND THEN
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

-- An expired lease is an abnormal end too (the holder hung, or is cut off): isolate the shard.
-- Nobody reported the item in hand, so nothing is blamed and the attempt counts.
CREATE OR REPLACE FUNCTION vtp_release_expired_leases(p_backoff_base double precision, p_backoff_cap double precision)
RETURNS TABLE (job_id bigint, shard_index integer, lease_token uuid, outcome text)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT s.job_id, s.shard_index, s.lease_owner, s.lease_token FROM shards s
         WHERE s.state = 'leased' AND s.lease_expires_at < now()
         ORDER BY s.job_id, s.shard_index
           FOR UPDATE SKIP LOCKED
    LOOP
        job_id := r.job_id;
        shard_index := r.shard_index;
        lease_token := r.lease_token;
        UPDATE shards s SET isolated = true WHERE s.job_id = r.job_id AND s.shard_index = r.shard_index;
        outcome := vtp_requeue_or_fail(r.job_id, r.shard_index,
                                       format('lease expired (owner %s)', coalesce(r.lease_owner, 'unknown')),
                                       p_backoff_base, p_backoff_cap);
        RETURN NEXT;
    END LOOP;
END;
$$;

-- A worker that stops on purpose (Ctrl-C, shutdown) hands its shards back: they return to pending
-- at once, and the attempt their claim counted is refunded, because nothing about the shard ended
-- the run; an interrupted job must not run out of attempts. Returns 'requeued', or 'lease_lost'
-- (the lease is no longer held under p_token: nothing changes) or 'unknown_shard'.
CREATE FUNCTION vtp_hand_back_shard(p_job bigint, p_shard integer, p_token uuid, p_reason text)
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
        RETURN 'lease_lost';
    END IF;
    UPDATE shards
       SET state = 'pending', lease_expires_at = NULL, next_eligible_at = '-infinity',
           attempts = greatest(attempts - 1, 0)
     WHERE job_id = p_job AND shard_index = p_shard;
    RETURN 'requeued';
END;
$$;
