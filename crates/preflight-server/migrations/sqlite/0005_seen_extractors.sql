-- The extractors (vendor, model, version) each template version has seen on confirmed
-- documents: a document from another one is named EXTRACTOR_CHANGED. Empty: not known yet
-- (the first matched evaluation, or the extractor sent at registration, sets it).
ALTER TABLE templates ADD COLUMN seen_extractors TEXT NOT NULL DEFAULT '[]';
