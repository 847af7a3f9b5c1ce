-- A debit key whose return came first is a tombstone: a later debit under it is refused with 409. A debit that was
-- refused (too few tokens) and then returned is not one: a retry of that debit answers its 402 again. Both had
-- debited = false and a return_asked, so the two were told apart by nothing; now by this flag.
ALTER TABLE wallet_debits ADD COLUMN cancelled boolean NOT NULL DEFAULT false;

UPDATE wallet_debits SET cancelled = true WHERE NOT debited AND reference = 'returned before any debit' AND return_asked IS NOT NULL;
