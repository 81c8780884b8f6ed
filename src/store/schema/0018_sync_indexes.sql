-- Which rooms got receipts after a sync position, without reading every room's.
CREATE INDEX receipts_by_stream ON receipts (stream_id);
