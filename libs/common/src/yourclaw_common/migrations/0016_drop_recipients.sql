-- messaging reads users by channel address through `channel_recipients`
-- (0013); the per-phone `recipients` view (0006) before it has no reader
-- left. It exposes gateway tokens to messaging's role: one view fewer to guard.
DROP VIEW recipients;
