"""Deterministic sample data the registry simulators serve (and the demo starter files).

Pure functions, no I/O. Each list comes from its own fixed-seed generator and is built one
item after another, so `sample_citizens(10) == sample_citizens()[:10]`: a starter that asks
for fewer rows still gets rows the registries know. The simulators serve the default sizes.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CITIZEN_ID_PATTERN = r"^[0-9]{12}$"
PARCEL_ID_PATTERN = r"^HN-[A-Z]{2}-[0-9]{6}$"
ENTERPRISE_CODE_PATTERN = r"^[0-9]{10}$"
PACKAGE_ID_PATTERN = r"^HT-[0-9]{4}-[0-9]{6}$"

DEFAULT_CITIZENS = 200
DEFAULT_PARCELS = 100
DEFAULT_ENTERPRISES = 60
DEFAULT_CIVIL_PACKAGES = 100


class SeedModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SeedCitizen(SeedModel):
    citizen_id: str = Field(pattern=CITIZEN_ID_PATTERN)
    full_name: str
    date_of_birth: date
    sex: Literal["male", "female"]
    address: str
    phone: str = Field(pattern=r"^0[0-9]{9}$")


class SeedParcel(SeedModel):
    parcel_id: str = Field(pattern=PARCEL_ID_PATTERN)
    owner_citizen_id: str = Field(pattern=CITIZEN_ID_PATTERN)
    area_m2: float = Field(gt=0)
    # Land-use codes of the land law's classification: ODT urban residential, ONT rural
    # residential, CLN perennial crops, LUC rice, TMD commercial/service.
    land_use: Literal["ODT", "ONT", "CLN", "LUC", "TMD"]
    ward: str
    encumbered: bool


class SeedEnterprise(SeedModel):
    enterprise_code: str = Field(pattern=ENTERPRISE_CODE_PATTERN)
    name: str
    status: Literal["active", "suspended"]
    owner_citizen_id: str = Field(pattern=CITIZEN_ID_PATTERN)


class SeedCivilPackage(SeedModel):
    package_id: str = Field(pattern=PACKAGE_ID_PATTERN)
    kind: Literal["birth", "death", "marriage"]
    subject_citizen_id: str = Field(pattern=CITIZEN_ID_PATTERN)
    registered_on: date


# --- vocabularies ---------------------------------------------------------------------

_FAMILY_NAMES = (
    ("Nguyễn", 30),
    ("Trần", 11),
    ("Lê", 9),
    ("Phạm", 7),
    ("Hoàng", 5),
    ("Vũ", 4),
    ("Đặng", 3),
    ("Bùi", 3),
    ("Đỗ", 3),
    ("Ngô", 2),
    ("Dương", 2),
    ("Lý", 1),
)
_MIDDLE = {
    "male": ("Văn", "Đức", "Minh", "Quang", "Hữu", "Thành", "Xuân", "Công"),
    "female": ("Thị", "Thu", "Ngọc", "Thanh", "Phương", "Minh", "Thùy", "Hồng"),
}
_GIVEN = {
    "male": (
        "Anh", "Hùng", "Dũng", "Tuấn", "Long", "Nam", "Hải", "Sơn",
        "Quân", "Khánh", "Bình", "Phong", "Đạt", "Trung", "Hiếu", "Thắng",
    ),
    "female": (
        "Lan", "Hương", "Mai", "Hoa", "Linh", "Trang", "Hạnh", "Thảo",
        "Ngân", "Yến", "Nhung", "Hà", "Huyền", "Ngọc", "Vân", "Giang",
    ),
}  # fmt: skip

# (street, ward after the July 2025 merger, two-letter ward code used in parcel ids)
_STREETS = (
    ("Hàng Bạc", "Hoàn Kiếm", "HK"),
    ("Hàng Đào", "Hoàn Kiếm", "HK"),
    ("Tràng Tiền", "Cửa Nam", "CN"),
    ("Phan Đình Phùng", "Ba Đình", "BD"),
    ("Đội Cấn", "Ngọc Hà", "NH"),
    ("Giảng Võ", "Giảng Võ", "GV"),
    ("Bà Triệu", "Hai Bà Trưng", "HT"),
    ("Minh Khai", "Vĩnh Tuy", "VT"),
    ("Bạch Mai", "Bạch Mai", "BM"),
    ("Xã Đàn", "Kim Liên", "KL"),
    ("Thụy Khuê", "Tây Hồ", "TH"),
    ("Xuân Thủy", "Cầu Giấy", "CG"),
    ("Hoàng Quốc Việt", "Nghĩa Đô", "ND"),
    ("Trung Kính", "Yên Hòa", "YH"),
    ("Quang Trung", "Hà Đông", "HD"),
    ("Nguyễn Trãi", "Thanh Xuân", "TX"),
)

# Province codes of birth registration (Circular 59/2021): mostly Hà Nội, some neighbours.
_HANOI = "001"
_OTHER_PROVINCES = ("022", "026", "027", "030", "031", "033", "034", "035", "036", "037",
                    "038", "040", "048", "079")  # fmt: skip
_MOBILE_PREFIXES = ("090", "091", "093", "094", "096", "097", "098", "086", "088", "032",
                    "034", "035", "038", "039", "070", "077", "081", "083")  # fmt: skip


def _weighted_family(rng: random.Random) -> str:
    names = [n for n, _ in _FAMILY_NAMES]
    weights = [w for _, w in _FAMILY_NAMES]
    return rng.choices(names, weights)[0]


def _citizen_id(rng: random.Random, born: date, sex: str) -> str:
    province = _HANOI if rng.random() < 0.8 else rng.choice(_OTHER_PROVINCES)
    # 4th digit: sex and century (0 male / 1 female in the 1900s, 2 / 3 in the 2000s).
    century = 0 if born.year < 2000 else 2
    gender_century = century + (1 if sex == "female" else 0)
    return f"{province}{gender_century}{born.year % 100:02d}{rng.randrange(1_000_000):06d}"


# --- generators -----------------------------------------------------------------------


@lru_cache(maxsize=8)
def _citizens(n: int) -> tuple[SeedCitizen, ...]:
    rng = random.Random(20250701)
    seen: set[str] = set()
    out: list[SeedCitizen] = []
    first_day = date(1945, 1, 1)
    span = (date(2015, 12, 31) - first_day).days
    while len(out) < n:
        sex: Literal["male", "female"] = "female" if rng.random() < 0.5 else "male"
        born = first_day + timedelta(days=rng.randrange(span))
        citizen_id = _citizen_id(rng, born, sex)
        full_name = " ".join(
            (_weighted_family(rng), rng.choice(_MIDDLE[sex]), rng.choice(_GIVEN[sex]))
        )
        street, ward, _ = rng.choice(_STREETS)
        address = f"{rng.randint(1, 199)} {street}, phường {ward}, Hà Nội"
        phone = f"{rng.choice(_MOBILE_PREFIXES)}{rng.randrange(10_000_000):07d}"
        if citizen_id in seen:
            continue
        seen.add(citizen_id)
        out.append(
            SeedCitizen(
                citizen_id=citizen_id,
                full_name=full_name,
                date_of_birth=born,
                sex=sex,
                address=address,
                phone=phone,
            )
        )
    return tuple(out)


def sample_citizens(n: int = DEFAULT_CITIZENS) -> list[SeedCitizen]:
    """Citizens the population registry knows (the simulator serves the default 200)."""
    return list(_citizens(n))


def _registry_owner_ids() -> list[str]:
    # Owners always come from the default citizen list, which the population registry serves.
    return [c.citizen_id for c in _citizens(DEFAULT_CITIZENS)]


def sample_parcels(n: int = DEFAULT_PARCELS) -> list[SeedParcel]:
    rng = random.Random(20250702)
    owners = _registry_owner_ids()
    seen: set[str] = set()
    out: list[SeedParcel] = []
    uses: list[Literal["ODT", "ONT", "CLN", "LUC", "TMD"]] = ["ODT", "ONT", "CLN", "LUC", "TMD"]
    while len(out) < n:
        _, ward, ward_code = rng.choice(_STREETS)
        parcel_id = f"HN-{ward_code}-{rng.randrange(1, 1_000_000):06d}"
        owner = rng.choice(owners)
        area = round(rng.uniform(30.0, 300.0), 1)
        land_use = rng.choices(uses, [70, 8, 8, 6, 8])[0]
        encumbered = rng.random() < 0.15
        if parcel_id in seen:
            continue
        seen.add(parcel_id)
        out.append(
            SeedParcel(
                parcel_id=parcel_id,
                owner_citizen_id=owner,
                area_m2=area,
                land_use=land_use,
                ward=ward,
                encumbered=encumbered,
            )
        )
    return out


_TRADE = ("Thương mại", "Dịch vụ", "Xây dựng", "Công nghệ", "Vận tải", "Thực phẩm",
          "Du lịch", "Sản xuất", "Tư vấn", "Đầu tư")  # fmt: skip
_BRAND = ("Hoàng Long", "Thăng Long", "Hồng Hà", "An Phát", "Minh Anh", "Phú Gia",
          "Đông Đô", "Việt Tiến", "Sao Mai", "Kim Ngân", "Tràng An", "Hà Thành")  # fmt: skip


def sample_enterprises(n: int = DEFAULT_ENTERPRISES) -> list[SeedEnterprise]:
    rng = random.Random(20250703)
    owners = _registry_owner_ids()
    seen: set[str] = set()
    out: list[SeedEnterprise] = []
    while len(out) < n:
        # Enterprise codes (= tax codes) issued in Hà Nội start with 01.
        code = f"01{rng.randrange(100_000_000):08d}"
        trades = rng.sample(_TRADE, 2)
        name = f"Công ty TNHH {trades[0]} {trades[1].lower()} {rng.choice(_BRAND)}"
        status: Literal["active", "suspended"] = "suspended" if rng.random() < 0.1 else "active"
        owner = rng.choice(owners)
        if code in seen:
            continue
        seen.add(code)
        out.append(
            SeedEnterprise(enterprise_code=code, name=name, status=status, owner_citizen_id=owner)
        )
    return out


def sample_civil_packages(n: int = DEFAULT_CIVIL_PACKAGES) -> list[SeedCivilPackage]:
    rng = random.Random(20250704)
    subjects = _registry_owner_ids()
    kinds: list[Literal["birth", "death", "marriage"]] = ["birth", "death", "marriage"]
    first_day = date(2026, 1, 5)
    out: list[SeedCivilPackage] = []
    for index in range(1, n + 1):
        registered_on = first_day + timedelta(days=rng.randrange(300))
        out.append(
            SeedCivilPackage(
                package_id=f"HT-{registered_on.year}-{index:06d}",
                kind=rng.choices(kinds, [60, 15, 25])[0],
                subject_citizen_id=rng.choice(subjects),
                registered_on=registered_on,
            )
        )
    return out


def unknown_citizen_id(k: int = 0) -> str:
    """A well-formed citizen ID that the population registry does not know.

    Distinct `k` give distinct IDs, for tests that need several.
    """
    known = set(_registry_owner_ids())
    found = 0
    # Hà Nội, male, born 1999, counting down from 999999: far from the random draws.
    for serial in range(999_999, -1, -1):
        candidate = f"001099{serial:06d}"
        if candidate in known:
            continue
        if found == k:
            return candidate
        found += 1
    raise ValueError(f"no unknown citizen id number {k}")
