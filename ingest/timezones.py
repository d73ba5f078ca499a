"""The local time zone of a scan's place, for sources that send local times without an offset.

AfterShip documents ``checkpoint_time`` as the carrier's own value "in the timezone of the checkpoint", written
``YYYY-MM-DD``, ``YYYY-MM-DDTHH:MM:SS`` or with an offset; 17TRACK's ``time_raw`` likewise. A time without an
offset is read in the zone of the scan's country (ISO 3166 alpha-2 or alpha-3, as the sources write it) and,
for the large countries that span zones, of its state or province when given. A country this table does not
know, or none, is read by the caller's fallback. Zones come from the IANA database (``zoneinfo``; the
``tzdata`` package ships it where the system has none).
"""

from __future__ import annotations

from datetime import tzinfo
from functools import cache
from zoneinfo import ZoneInfo

# Single-zone countries (and each multi-zone country's zone when its state is not known), by alpha-2.
_COUNTRY_ZONE: dict[str, str] = {
    "CN": "Asia/Shanghai", "HK": "Asia/Hong_Kong", "MO": "Asia/Macau", "TW": "Asia/Taipei", "JP": "Asia/Tokyo",
    "KR": "Asia/Seoul", "SG": "Asia/Singapore", "MY": "Asia/Kuala_Lumpur", "TH": "Asia/Bangkok",
    "VN": "Asia/Ho_Chi_Minh", "PH": "Asia/Manila", "ID": "Asia/Jakarta", "IN": "Asia/Kolkata",
    "PK": "Asia/Karachi", "BD": "Asia/Dhaka", "AE": "Asia/Dubai", "SA": "Asia/Riyadh", "IL": "Asia/Jerusalem",
    "TR": "Europe/Istanbul", "GB": "Europe/London", "IE": "Europe/Dublin", "FR": "Europe/Paris",
    "DE": "Europe/Berlin", "NL": "Europe/Amsterdam", "BE": "Europe/Brussels", "LU": "Europe/Luxembourg",
    "IT": "Europe/Rome", "ES": "Europe/Madrid", "PT": "Europe/Lisbon", "CH": "Europe/Zurich",
    "AT": "Europe/Vienna", "PL": "Europe/Warsaw", "CZ": "Europe/Prague", "SK": "Europe/Bratislava",
    "HU": "Europe/Budapest", "RO": "Europe/Bucharest", "BG": "Europe/Sofia", "GR": "Europe/Athens",
    "SE": "Europe/Stockholm", "NO": "Europe/Oslo", "DK": "Europe/Copenhagen", "FI": "Europe/Helsinki",
    "UA": "Europe/Kyiv", "RU": "Europe/Moscow", "NZ": "Pacific/Auckland", "ZA": "Africa/Johannesburg",
    "EG": "Africa/Cairo", "NG": "Africa/Lagos", "KE": "Africa/Nairobi", "AR": "America/Argentina/Buenos_Aires",
    "CL": "America/Santiago", "CO": "America/Bogota", "PE": "America/Lima", "BR": "America/Sao_Paulo",
    "MX": "America/Mexico_City", "US": "America/Chicago", "CA": "America/Toronto", "AU": "Australia/Sydney",
}
_ALPHA3: dict[str, str] = {
    "CHN": "CN", "HKG": "HK", "MAC": "MO", "TWN": "TW", "JPN": "JP", "KOR": "KR", "SGP": "SG", "MYS": "MY",
    "THA": "TH", "VNM": "VN", "PHL": "PH", "IDN": "ID", "IND": "IN", "PAK": "PK", "BGD": "BD", "ARE": "AE",
    "SAU": "SA", "ISR": "IL", "TUR": "TR", "GBR": "GB", "IRL": "IE", "FRA": "FR", "DEU": "DE", "NLD": "NL",
    "BEL": "BE", "LUX": "LU", "ITA": "IT", "ESP": "ES", "PRT": "PT", "CHE": "CH", "AUT": "AT", "POL": "PL",
    "CZE": "CZ", "SVK": "SK", "HUN": "HU", "ROU": "RO", "BGR": "BG", "GRC": "GR", "SWE": "SE", "NOR": "NO",
    "DNK": "DK", "FIN": "FI", "UKR": "UA", "RUS": "RU", "NZL": "NZ", "ZAF": "ZA", "EGY": "EG", "NGA": "NG",
    "KEN": "KE", "ARG": "AR", "CHL": "CL", "COL": "CO", "PER": "PE", "BRA": "BR", "MEX": "MX", "USA": "US",
    "CAN": "CA", "AUS": "AU",
}
# States and provinces of the countries that span zones (postal abbreviations).
_STATE_ZONE: dict[str, dict[str, str]] = {
    "US": {
        **dict.fromkeys(("CT", "DE", "DC", "FL", "GA", "IN", "KY", "ME", "MD", "MA", "MI", "NH", "NJ", "NY", "NC",
                         "OH", "PA", "RI", "SC", "VT", "VA", "WV"), "America/New_York"),
        **dict.fromkeys(("AL", "AR", "IL", "IA", "KS", "LA", "MN", "MS", "MO", "NE", "ND", "OK", "SD", "TN", "TX",
                         "WI"), "America/Chicago"),
        **dict.fromkeys(("CO", "ID", "MT", "NM", "UT", "WY"), "America/Denver"),
        "AZ": "America/Phoenix",
        **dict.fromkeys(("CA", "NV", "OR", "WA"), "America/Los_Angeles"),
        "AK": "America/Anchorage", "HI": "Pacific/Honolulu", "PR": "America/Puerto_Rico",
    },
    "CA": {
        **dict.fromkeys(("ON", "QC"), "America/Toronto"), "BC": "America/Vancouver", "AB": "America/Edmonton",
        "MB": "America/Winnipeg", "SK": "America/Regina", **dict.fromkeys(("NS", "NB", "PE"), "America/Halifax"),
        "NL": "America/St_Johns", "YT": "America/Whitehorse", "NT": "America/Yellowknife",
        "NU": "America/Iqaluit",
    },
    "AU": {
        **dict.fromkeys(("NSW", "ACT"), "Australia/Sydney"), "VIC": "Australia/Melbourne",
        "TAS": "Australia/Hobart", "QLD": "Australia/Brisbane", "SA": "Australia/Adelaide", "WA": "Australia/Perth",
        "NT": "Australia/Darwin",
    },
    "BR": {"AM": "America/Manaus", "MT": "America/Cuiaba", "MS": "America/Campo_Grande", "AC": "America/Rio_Branco"},
}


def zone_of(country: object, state: object = None) -> tzinfo | None:
    """The zone of a place given by country (alpha-2 or alpha-3) and, optionally, state; None if unknown."""
    if not isinstance(country, str):
        return None
    code = country.strip().upper()
    code = _ALPHA3.get(code, code)
    states = _STATE_ZONE.get(code)
    name = states.get(state.strip().upper()) if states is not None and isinstance(state, str) else None
    name = name or _COUNTRY_ZONE.get(code)
    return _zone(name) if name is not None else None


@cache
def _zone(name: str) -> tzinfo:
    return ZoneInfo(name)
