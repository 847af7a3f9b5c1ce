-- The latest Checkout Session of each user, pack and pair of return URLs: a double click gets it back while it is open
-- and recent (ten minutes), and a user who has paid it gets a new one for the next pack. (A fixed ten-minute
-- idempotency bucket gave a double click across a bucket's end two sessions, and a second pack bought within the same
-- ten minutes the page of the one already paid.)
CREATE TABLE wallet_checkouts (
    user_id    text        NOT NULL,
    pack_id    text        NOT NULL,
    urls_hash  text        NOT NULL,
    -- NULL after an attempt Stripe refused (its key is not used again: Stripe would replay the refusal for a day).
    session_id text        NULL,
    url        text        NULL,
    sequence   integer     NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT pk_wallet_checkouts PRIMARY KEY (user_id, pack_id, urls_hash)
);
