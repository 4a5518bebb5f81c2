-- messaging: the assistant whose "ready" notice was left out because the user
-- was already talking to it. `assistant.ready` comes again after a model change
-- or a re-create; this keeps that later one from announcing the assistant to a
-- user who has long been chatting with it.
ALTER TABLE conversations ADD COLUMN ready_skipped_for uuid;
