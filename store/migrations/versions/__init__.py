"""One file per schema revision, applied in order by store.migrate."""
