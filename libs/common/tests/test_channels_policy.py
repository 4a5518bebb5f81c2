from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings
from yourclaw_common.channels_policy import (
    EVERYWHERE,
    AllowedCountries,
    AllowedCountriesSetting,
    country_of,
    parse_allowed,
    whatsapp_allowed,
)

# The production overlay's list: the EEA (Italy among it; with the parts of
# it that have their own ISO code) and Brazil.
EEA_AND_BRAZIL = (
    "AT,BE,BG,HR,CY,CZ,DK,EE,FI,FR,DE,GR,HU,IE,IT,LV,LT,LU,MT,NL,PL,PT,RO,SK,SI,"
    "ES,SE,IS,LI,NO,AX,GF,GP,MQ,RE,YT,MF,BR"
)


class _Settings(BaseSettings):
    whatsapp_allowed_countries: AllowedCountriesSetting = EVERYWHERE


class TestParseAllowed:
    def test_star_is_everywhere(self):
        assert parse_allowed(" * ") == EVERYWHERE
        assert str(EVERYWHERE) == "*"

    def test_iso_codes_and_calling_codes_mixed(self):
        allowed = parse_allowed("it, br +44 351;1787")
        assert allowed == AllowedCountries(
            countries=frozenset({"IT", "BR"}),
            calling_codes=frozenset({"44", "351", "1787"}),
        )
        assert str(allowed) == "BR,IT,+1787,+351,+44"

    def test_empty_is_nowhere(self):
        allowed = parse_allowed("")
        assert not allowed.everywhere
        assert not whatsapp_allowed("+393331234567", allowed)

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("IT,ZZ", "'ZZ' is not an ISO 3166 country code we know"),
            ("Italy", "neither an ISO 3166 alpha-2 code"),
            ("+039", "neither an ISO 3166 alpha-2 code"),
            ("*,IT", "stands alone"),
        ],
    )
    def test_garbage_is_named(self, text, message):
        with pytest.raises(ValueError, match=message):
            parse_allowed(text)

    def test_the_production_list_parses(self):
        allowed = parse_allowed(EEA_AND_BRAZIL)
        assert len(allowed.countries) == 38
        assert not allowed.calling_codes


class TestWhatsappAllowed:
    @pytest.mark.parametrize(
        ("phone", "expected"),
        [
            ("+393331234567", True),  # Italy
            ("+39 333 123 4567", True),  # formatted
            ("0039 333-123-4567", True),  # international 00
            ("whatsapp:+393331234567", True),  # as Twilio spells it
            ("+5511912345678", True),  # Brazil
            ("+4915112345678", True),  # Germany
            ("+4741234567", True),  # Norway
            ("+35818123456", True),  # Åland: part of Finland and the EU
            ("+14155550100", False),  # United States
            ("+1 (416) 555-0100", False),  # Canada
            ("+447700900123", False),  # United Kingdom
            ("+41441234567", False),  # Switzerland: not in the EEA
            ("+390669812345", False),  # Vatican City, inside +39
            ("", False),
            ("not a number", False),
        ],
    )
    def test_eea_and_brazil(self, phone, expected):
        assert whatsapp_allowed(phone, parse_allowed(EEA_AND_BRAZIL)) is expected

    def test_everywhere_allows_any_number(self):
        assert whatsapp_allowed("+14155550100", EVERYWHERE)

    def test_a_calling_code_allows_every_number_under_it(self):
        allowed = parse_allowed("+1")
        assert whatsapp_allowed("+14165550100", allowed)  # Canada
        assert whatsapp_allowed("+17875550100", allowed)  # Puerto Rico
        assert not whatsapp_allowed("+447700900123", allowed)

    def test_a_country_of_a_shared_code_is_only_its_own_numbers(self):
        us = parse_allowed("US")
        assert whatsapp_allowed("+14155550100", us)
        assert not whatsapp_allowed("+14165550100", us)  # Canada
        assert not whatsapp_allowed("+17875550100", us)  # Puerto Rico
        assert whatsapp_allowed("+14165550100", parse_allowed("CA"))
        assert whatsapp_allowed("+77011234567", parse_allowed("KZ"))
        assert not whatsapp_allowed("+77011234567", parse_allowed("RU"))

    def test_a_prefix_shared_by_several_countries_allows_each(self):
        assert whatsapp_allowed("+590690123456", parse_allowed("BL"))
        assert whatsapp_allowed("+590690123456", parse_allowed("GP"))


class TestCountryOf:
    @pytest.mark.parametrize(
        ("phone", "iso"),
        [
            ("+393331234567", "IT"),
            ("+1 416 555 0100", "CA"),
            ("+14155550100", "US"),
            ("+441534123456", "JE"),
            ("+262269123456", "YT"),
            ("+262262123456", "RE"),
            ("+590690123456", None),  # shared by Guadeloupe and its neighbours
            ("+0", None),
        ],
    )
    def test_longest_prefix_wins(self, phone, iso):
        assert country_of(phone) == iso


class TestAllowedCountriesSetting:
    def test_read_from_the_environment_as_text(self, monkeypatch):
        monkeypatch.setenv("WHATSAPP_ALLOWED_COUNTRIES", "IT, +55")
        allowed = _Settings().whatsapp_allowed_countries
        assert allowed.countries == {"IT"}
        assert allowed.calling_codes == {"55"}

    def test_default_is_everywhere(self, monkeypatch):
        monkeypatch.delenv("WHATSAPP_ALLOWED_COUNTRIES", raising=False)
        assert _Settings().whatsapp_allowed_countries.everywhere

    def test_garbage_refuses_the_settings(self, monkeypatch):
        monkeypatch.setenv("WHATSAPP_ALLOWED_COUNTRIES", "IT,XX")
        with pytest.raises(ValidationError, match="'XX' is not an ISO 3166"):
            _Settings()
