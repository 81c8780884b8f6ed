-- Other servers' users: their public profiles, and the queue of profiles to ask for.

-- A remote user's public profile as their server gave it (`/query/profile`) or pushed it
-- (a profile EDU): the one source of remote names for the user directory. `fields` is
-- the whole profile as JSON, MSC4133 fields included.
CREATE TABLE remote_profiles (
    user_id TEXT PRIMARY KEY,
    server_name TEXT NOT NULL,
    displayname TEXT,
    avatar_url TEXT,
    fields TEXT NOT NULL,
    source TEXT NOT NULL,
    updated_ts BIGINT NOT NULL
);

-- The remote-profile stream: one row per change of `remote_profiles`, written with it.
CREATE TABLE remote_profile_changes (
    stream_id BIGINT PRIMARY KEY,
    user_id TEXT NOT NULL,
    ts BIGINT NOT NULL
);
INSERT INTO stream_positions (stream, position) VALUES ('remote_profile_changes', 0);

-- Remote users whose profile is to be asked for: one row per user, however many hints.
-- Until the first attempt each hint moves the fetch later (from `queued_ts` on, within a
-- bound), so a burst is one fetch; `attempts` counts failures. The row goes on success,
-- on "no such profile", or when the attempts run out (until the next hint).
CREATE TABLE remote_profile_queue (
    user_id TEXT PRIMARY KEY,
    server_name TEXT NOT NULL,
    queued_ts BIGINT NOT NULL,
    next_try_ts BIGINT NOT NULL,
    attempts BIGINT NOT NULL
);
CREATE INDEX remote_profile_queue_due ON remote_profile_queue (next_try_ts);
