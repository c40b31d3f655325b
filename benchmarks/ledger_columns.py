"""The ledger rows one posted message writes, as both raw floors copy them: the columns of
inbox, journal_entry, journal_line and stock_move after each table's own id and parent id.

core_throughput.py's SQLite floor lets SQLite number the rows again; service_postgres.py's
psycopg floor copies the ids as well (each table's id columns, then these)."""

INBOX_COLUMNS = (  # after inbox_id
    "message_id, idempotency_key, unique_ids, payload_hash, message_type, source_system, stream,"
    " source_seq, plant, item, work_order, lot, supplier, period, status, code, envelope,"
    " received_at, committed_at, hold_deadline, waits_on, late, applied_seq"
)
ENTRY_COLUMNS = (  # after entry_id, inbox_id
    "message_id, plant, currency, period, original_period, late, event_type, work_order,"
    " occurred_at, posted_at"
)
LINE_COLUMNS = "line_no, plant, account, currency, amount_minor, work_order, item"  # after entry_id
MOVE_COLUMNS = "plant, item, location, lot, qty, value_minor, account"  # after move_id, entry_id
