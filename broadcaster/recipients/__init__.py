"""Recipient lists: an office's people with their numbers, imported from CSV or XLSX.

* `reader`: a list file's bytes → validated, normalised, merged rows and every bad row
  (CSV in UTF-8 with or without a BOM or GBK/GB18030; XLSX through openpyxl read-only).
* `store`: the office's recipient store, its own SQLite file in the state folder (0600):
  lists by name, opt-outs. Numbers live here and in the office's files, never in the
  delivery log (that keeps the masked form and a keyed hash).

May import: the standard library, phonenumbers, openpyxl, `broadcaster.model.targets`.
"""

from broadcaster.recipients.reader import ListRead, RecipientRow, RowProblem, read_list
from broadcaster.recipients.store import RecipientStore, StoredList

__all__ = ["ListRead", "RecipientRow", "RecipientStore", "RowProblem", "StoredList", "read_list"]
