"""Who observed: the site (a monitoring organisation: the city, one district) and the vantage point (the network
it probes from). Several instances ship to one Elasticsearch and one Prometheus, so every observation, finding,
document and metric carries both, and the vantage is part of a finding's identity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Vantage(StrEnum):
    """The network a monitor probes from. A service's answer depends on it (source restrictions, boundary filters)."""

    INTERNET = "internet"  # the public Internet
    EXTRANET = "extranet"  # 政务外网: the e-government extranet between government bodies
    INTERNAL = "internal"  # inside the organisation's own network (its LAN, DMZ or data centre)


#: a short slug: it appears in Elasticsearch index names, document ids and metric labels
SITE = re.compile(r"^[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?$")
SITE_RULE = "a short slug: lowercase letters, digits and '-', starting with a letter, at most 32 characters"
#: a single-site deployment need not name its site
DEFAULT_SITE = "default"
#: a monitor of a registry's private address ranges sits inside the network it watches
DEFAULT_VANTAGE = Vantage.INTERNAL
VANTAGE_NAMES = ", ".join(v.value for v in Vantage)


def check_site(value: str) -> str:
    """The site if it is a valid slug; ValueError saying what a site may be otherwise."""
    if not SITE.match(value):
        raise ValueError(f"'{value}' is not a valid site ({SITE_RULE}), e.g. 'city' or 'hexi-district'")
    return value


def check_vantage(value: str) -> Vantage:
    """The vantage named `value`; ValueError listing the known ones otherwise."""
    try:
        return Vantage(value)
    except ValueError:
        raise ValueError(f"unknown vantage '{value}' (one of {VANTAGE_NAMES})") from None


@dataclass(frozen=True, slots=True)
class Observer:
    """The identity of one Sentinel instance, stamped on everything it records."""

    site: str = DEFAULT_SITE
    vantage: Vantage = DEFAULT_VANTAGE

    def __str__(self) -> str:
        return f"{self.site}/{self.vantage.value}"


DEFAULT_OBSERVER = Observer()
