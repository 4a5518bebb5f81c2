"""Where WhatsApp may carry the assistant: `WHATSAPP_ALLOWED_COUNTRIES`.

Meta's WhatsApp Business policy bars general-purpose AI assistants outside a few
regions (docs/channels.md, "WhatsApp and where it is allowed"). The setting is a
list, separated by commas or spaces, of ISO 3166 alpha-2 codes (`IT`), calling
codes (`39`, `+39`, or a longer prefix such as `1787`), or `*` alone for
everywhere; empty means nowhere. It is parsed once, with the settings, into an
`AllowedCountries`.

A number's country is the owner of the longest calling-code prefix it starts
with: `+1 416…` is Canada's, other `+1` numbers are the United States' unless
another country's area code claims them, `+358 18…` is Åland's. Where the
prefix alone cannot tell countries apart (`+590`: Guadeloupe, Saint
Barthélemy, Saint Martin), listing any of them allows the prefix. A calling code
in the list allows every number that starts with it, whatever country that is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_settings import NoDecode

__all__ = [
    "EVERYWHERE",
    "AllowedCountries",
    "AllowedCountriesSetting",
    "country_of",
    "parse_allowed",
    "whatsapp_allowed",
]

# ISO 3166 alpha-2 code, then its calling-code prefixes (ITU-T E.164 country
# codes, plus the area codes that set a country apart inside a shared code).
_TABLE = """
AD 376
AE 971
AF 93
AG 1268
AI 1264
AL 355
AM 374
AO 244
AR 54
AS 1684
AT 43
AU 61
AW 297
AX 35818
AZ 994
BA 387
BB 1246
BD 880
BE 32
BF 226
BG 359
BH 973
BI 257
BJ 229
BL 590
BM 1441
BN 673
BO 591
BQ 5993 5994 5997
BR 55
BS 1242
BT 975
BW 267
BY 375
BZ 501
CA 1204 1226 1236 1249 1250 1257 1263 1289 1306 1343 1354 1365 1367 1368 1382
CA 1403 1416 1418 1428 1431 1437 1438 1450 1460 1468 1474 1506 1514 1519 1548
CA 1579 1581 1584 1587 1604 1613 1639 1647 1672 1683 1705 1709 1742 1753 1778
CA 1780 1782 1807 1819 1825 1867 1873 1879 1902 1905 1942
CC 6189162
CD 243
CF 236
CG 242
CH 41
CI 225
CK 682
CL 56
CM 237
CN 86
CO 57
CR 506
CU 53
CV 238
CW 5999
CX 6189164
CY 357
CZ 420
DE 49
DJ 253
DK 45
DM 1767
DO 1809 1829 1849
DZ 213
EC 593
EE 372
EG 20
ER 291
ES 34
ET 251
FI 358
FJ 679
FK 500
FM 691
FO 298
FR 33
GA 241
GB 44
GD 1473
GE 995
GF 594
GG 441481
GH 233
GI 350
GL 299
GM 220
GN 224
GP 590
GQ 240
GR 30
GT 502
GU 1671
GW 245
GY 592
HK 852
HN 504
HR 385
HT 509
HU 36
ID 62
IE 353
IL 972
IM 441624
IN 91
IO 246
IQ 964
IR 98
IS 354
IT 39
JE 441534
JM 1658 1876
JO 962
JP 81
KE 254
KG 996
KH 855
KI 686
KM 269
KN 1869
KP 850
KR 82
KW 965
KY 1345
KZ 76 77
LA 856
LB 961
LC 1758
LI 423
LK 94
LR 231
LS 266
LT 370
LU 352
LV 371
LY 218
MA 212
MC 377
MD 373
ME 382
MF 590
MG 261
MH 692
MK 389
ML 223
MM 95
MN 976
MO 853
MP 1670
MQ 596
MR 222
MS 1664
MT 356
MU 230
MV 960
MW 265
MX 52
MY 60
MZ 258
NA 264
NC 687
NE 227
NF 6723
NG 234
NI 505
NL 31
NO 47
NP 977
NR 674
NU 683
NZ 64
OM 968
PA 507
PE 51
PF 689
PG 675
PH 63
PK 92
PL 48
PM 508
PR 1787 1939
PS 970
PT 351
PW 680
PY 595
QA 974
RE 262
RO 40
RS 381
RU 7
RW 250
SA 966
SB 677
SC 248
SD 249
SE 46
SG 65
SH 290 247
SI 386
SJ 4779
SK 421
SL 232
SM 378
SN 221
SO 252
SR 597
SS 211
ST 239
SV 503
SX 1721
SY 963
SZ 268
TC 1649
TD 235
TG 228
TH 66
TJ 992
TK 690
TL 670
TM 993
TN 216
TO 676
TR 90
TT 1868
TV 688
TW 886
TZ 255
UA 380
UG 256
US 1
UY 598
UZ 998
VA 379 3906698
VC 1784
VE 58
VG 1284
VI 1340
VN 84
VU 678
WF 681
WS 685
XK 383
YE 967
YT 262269 262639
ZA 27
ZM 260
ZW 263
"""


def _load(table: str) -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
    prefixes: dict[str, set[str]] = {}
    owners: dict[str, set[str]] = {}
    for line in table.split("\n"):
        if not line:
            continue
        iso, *codes = line.split()
        prefixes.setdefault(iso, set()).update(codes)
        for code in codes:
            owners.setdefault(code, set()).add(iso)
    return (
        {iso: frozenset(codes) for iso, codes in prefixes.items()},
        {code: frozenset(isos) for code, isos in owners.items()},
    )


_PREFIXES, _OWNERS = _load(_TABLE)
_LONGEST = max(len(code) for code in _OWNERS)
_ISO = re.compile(r"[A-Za-z]{2}")
_CALLING_CODE = re.compile(r"\+?([1-9][0-9]{0,5})")
_SEPARATORS = re.compile(r"[\s,;]+")


@dataclass(frozen=True)
class AllowedCountries:
    """Where WhatsApp may carry the assistant, as `parse_allowed` read it."""

    everywhere: bool = False
    countries: frozenset[str] = frozenset()
    calling_codes: frozenset[str] = frozenset()

    def __str__(self) -> str:
        if self.everywhere:
            return "*"
        return ",".join(
            sorted(self.countries) + [f"+{c}" for c in sorted(self.calling_codes)]
        )


EVERYWHERE = AllowedCountries(everywhere=True)


def parse_allowed(text: str) -> AllowedCountries:
    """The setting's text as `AllowedCountries`; ValueError names what is wrong."""
    items = [item for item in _SEPARATORS.split(text.strip()) if item]
    if items == ["*"]:
        return EVERYWHERE
    countries: set[str] = set()
    calling_codes: set[str] = set()
    for item in items:
        if item == "*":
            raise ValueError("`*` (everywhere) stands alone, without other entries")
        if _ISO.fullmatch(item):
            iso = item.upper()
            if iso not in _PREFIXES:
                raise ValueError(f"{item!r} is not an ISO 3166 country code we know")
            countries.add(iso)
        elif match := _CALLING_CODE.fullmatch(item):
            calling_codes.add(match.group(1))
        else:
            raise ValueError(
                f"{item!r} is neither an ISO 3166 alpha-2 code (IT) nor a calling "
                "code (+39)"
            )
    return AllowedCountries(
        countries=frozenset(countries), calling_codes=frozenset(calling_codes)
    )


def _digits(phone: str) -> str:
    # E.164 as stored, or a formatted or `whatsapp:`-prefixed spelling of it.
    compact = re.sub(r"[^0-9+]", "", phone)
    if compact.startswith("00"):
        return compact[2:]
    return compact.lstrip("+")


def _owners(digits: str) -> frozenset[str]:
    for length in range(min(_LONGEST, len(digits)), 0, -1):
        owners = _OWNERS.get(digits[:length])
        if owners is not None:
            return owners
    return frozenset()


def country_of(phone: str) -> str | None:
    """The ISO 3166 alpha-2 code of a number's country; None when its prefix is
    no country's or is shared by several."""
    owners = _owners(_digits(phone))
    return next(iter(owners)) if len(owners) == 1 else None


def whatsapp_allowed(phone_e164: str, allowed: AllowedCountries) -> bool:
    """Whether the assistant may talk to this number over WhatsApp."""
    if allowed.everywhere:
        return True
    digits = _digits(phone_e164)
    if not digits:
        return False
    if any(digits.startswith(code) for code in allowed.calling_codes):
        return True
    return not _owners(digits).isdisjoint(allowed.countries)


def _coerce(value: Any) -> Any:
    return parse_allowed(value) if isinstance(value, str) else value


# A settings field: `whatsapp_allowed_countries: AllowedCountriesSetting =
# EVERYWHERE` reads `WHATSAPP_ALLOWED_COUNTRIES` as its plain text.
AllowedCountriesSetting = Annotated[
    AllowedCountries, NoDecode, BeforeValidator(_coerce)
]
