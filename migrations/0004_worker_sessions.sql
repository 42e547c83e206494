-- Worker sessions and job endings the coordinator acts on at once.
--
-- A worker session is one process lifetime. When it ends (the worker registered again as a new
-- process, said goodbye, or stopped responding) the coordinator hands its leases back at once
-- instead of waiting for them to expire: vtp_release_leases returns each lease still held under
-- the given token to pending, or fails the shard when it is out of attempts. The attempt is spent
-- (it was counted when the shard was claimed): a worker that dies holding a shard may have died of
-- it, and max_attempts is what stops a poison shard from taking down worker after worker. The
-- backoff before the next claim is the one a lease expiry gets. Leases no longer held under that
-- token (completed, expired, cancelled, re-issued) are left alone, so releasing is safe to repeat,
-- and a late result of the ended session is refused by its stale token.
CREATE FUNCTION vtp_release_leases(p_leases jsonb, p_reason text,
                                   p_backoff_base double precision, p_backoff_cap double precision)
RETURNS TABLE (job_id bigint, shard_index integer, lease_token uuid, outcome text)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT s.job_id, s.shard_index, s.lease_token FROM shards s
          JOIN jsonb_to_recordset(p_leases) AS l(job bigint, shard integer, token uuid)
            ON s.job_id = l.job AND s.shard_index = l.shard AND s.lease_token = l.token
         WHERE s.state = 'leased'
         ORDER BY s.job_id, s.shard_index
           FOR UPDATE OF s
    LOOP
        job_id := r.job_id;
        shard_index := r.shard_index;
        lease_token := r.lease_token;
        outcome := vtp_requeue_or_fail(r.job_id, r.shard_index, p_reason, p_backoff_base, p_backoff_cap);
        RETURN NEXT;
    END LOOP;
END;
$$;

-- Expired leases are reported with the token they were held under, so the coordinator drops
-- exactly those leases and never a newer lease of the same shard.
DROP FUNCTION vtp_release_expired_leases(double precision, double precision);
CREATE FUNCTION vtp_release_expired_leases(p_backoff_base double precision, p_backoff_cap double precision)
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
        outcome := vtp_requeue_or_fail(r.job_id, r.shard_index,
                                       format('lease expired (owner %s)', coalesce(r.lease_owner, 'unknown')),
                                       p_backoff_base, p_backoff_cap);
        RETURN NEXT;
    END LOOP;
END;
$$;

-- A cancel notifies the work channel (payload: the job id) like enqueue, resume and retry do, so a
-- coordinator revokes the job's shards on its workers and finalizes the job at once.
CREATE OR REPLACE FUNCTION vtp_cancel_job(p_job bigint) RETURNS text
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
        PERFORM pg_notify('vtp_work', p_job::text);
        RETURN 'ok';
    END IF;
    SELECT state INTO v_state FROM jobs WHERE id = p_job;
    RETURN coalesce(v_state, 'not_found');
END;
$$;
