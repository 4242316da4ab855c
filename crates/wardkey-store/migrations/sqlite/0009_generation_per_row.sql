-- PostgreSQL's 0009 makes its directory generation triggers per row, as
-- SQLite's have been since 0004: nothing to change here. The file keeps
-- both engines' migration numbers in step.
SELECT 1;
