"""Background work: the transactional outbox, its relay, and the job queue that delivers it."""
