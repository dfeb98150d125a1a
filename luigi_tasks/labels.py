"""Text labels of the 2009-2010 yellow files as the later codes.

Payment labels come in any case and several spellings ('CASH', 'Cash', 'CAS', 'CRD',
'Credit', 'No Charge', 'NOC', 'Dispute', 'DIS', 'UNK'); they are matched trimmed and
upper-cased. A label nobody has seen before becomes the "unknown" code and is counted in
the load report, never a crash mid-month. Vendors: CMT (Creative Mobile Technologies) is 1,
VTS (VeriFone) 2; DDS (Digital Dispatch Systems) has no modern code, so its ``vendor_id``
is NULL and the name is kept in ``vendor_name``.
"""
from __future__ import annotations

PAYMENT: dict[str, int] = {
    "1": 1, "CREDIT": 1, "CRE": 1, "CRD": 1, "CREDIT CARD": 1, "CARD": 1,
    "2": 2, "CASH": 2, "CAS": 2, "CSH": 2,
    "3": 3, "NO CHARGE": 3, "NOC": 3, "NO": 3, "NO CHG": 3,
    "4": 4, "DISPUTE": 4, "DIS": 4,
    "5": 5, "UNKNOWN": 5, "UNK": 5, "NA": 5,
    "6": 6, "VOIDED": 6, "VOID": 6, "VOI": 6,
}
VENDOR: dict[str, int | None] = {"1": 1, "CMT": 1, "2": 2, "VTS": 2, "DDS": None}

MAPS: dict[str, dict[str, int | None]] = {"payment": PAYMENT, "vendor": VENDOR}
# What an unseen label becomes: payment's "unknown" code; a vendor without a code stays NULL (its name is kept).
UNSEEN: dict[str, int | None] = {"payment": 5, "vendor": None}
