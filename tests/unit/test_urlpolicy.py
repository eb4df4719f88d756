"""Which addresses runbooks may open (orchestrator/urlpolicy.py): built-in refusals, the host lists, the app
itself. Host names are resolved for real; those used here resolve on this machine (numeric forms,
localhost), and no packet goes to any address named here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.config import Settings
from orchestrator.urlpolicy import UrlPolicy

DEFAULT = UrlPolicy.build()
METADATA = "link-local or a cloud metadata address"


async def refusal(policy: UrlPolicy, url: str) -> str | None:
    return (await policy.check_url(url)).refusal


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "169.254.169.254"),
        ("http://169.254.170.2/v2/credentials", "169.254.170.2"),
        ("http://[fe80::a9fe:a9fe]/", "fe80::a9fe:a9fe"),
        ("http://100.100.100.200/latest/meta-data/", "100.100.100.200"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254"),
        ("http://168.63.129.16/machine", "168.63.129.16"),
        ("https://[::ffff:169.254.169.254]/", "169.254.169.254"),  # IPv4-mapped: the same address
    ],
)
async def test_link_local_and_metadata_addresses_are_refused_by_default(url: str, address: str) -> None:
    assert await refusal(DEFAULT, url) == f"the address {address} is {METADATA} (ORCH_ALLOWED_HOSTS may allow it)"


@pytest.mark.parametrize("host", ["2852039166", "0xa9fea9fe", "169.254.43518", "0251.0376.0251.0376"])
async def test_a_name_is_refused_by_the_address_it_resolves_to(host: str) -> None:
    why = await refusal(DEFAULT, f"http://{host}/latest/meta-data/")
    assert why == f"{host} resolves to 169.254.169.254, which is {METADATA} (ORCH_ALLOWED_HOSTS may allow it)"


@pytest.mark.parametrize("host", ["metadata.google.internal", "METADATA.Google.Internal.", "metadata", "instance-data"])
async def test_metadata_service_names_are_refused_by_default(host: str) -> None:
    assert await refusal(DEFAULT, f"http://{host}/computeMetadata/v1/") == (
        f"{host.lower().rstrip('.')} is a cloud metadata service (ORCH_ALLOWED_HOSTS may allow it)"
    )


@pytest.mark.parametrize(
    "url", ["http://10.1.2.3/wiki", "https://192.168.1.10:8443/", "http://172.16.0.9/", "http://127.0.0.1:9999/"]
)
async def test_intranet_and_other_loopback_ports_are_allowed_by_default(url: str) -> None:
    verdict = await DEFAULT.check_url(url)
    assert verdict.refusal is None and verdict.addresses


APP = UrlPolicy.build(public_url="http://127.0.0.1:8000", host="127.0.0.1", port=8000)
OWN = "it is the orchestrator's own web app, whose pages runbooks may not open (except its demo under /demo/)"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/api/v1/jobs",
        "http://127.0.0.1:8000/login",
        "http://127.0.0.1:8000/",
        "http://localhost:8000/metrics",  # the same address by another name
        "http://0.0.0.0:8000/api/v1/jobs",  # which reaches this machine too
        "http://127.0.0.1:8000/demo/../api/v1/jobs",
        "http://127.0.0.1:8000/demo/..%2Fapi/v1/jobs",
    ],
)
async def test_the_apps_own_pages_are_refused(url: str) -> None:
    assert await refusal(APP, url) == OWN


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/demo/", "http://127.0.0.1:8000/demo/index.html", "http://127.0.0.1:8001/api"]
)
async def test_the_apps_demo_and_other_ports_are_allowed(url: str) -> None:
    assert await refusal(APP, url) is None


def test_behind_https_the_apps_own_origin_is_known_by_name() -> None:
    app = UrlPolicy.build(public_url="https://orchestrator.example.com", host="127.0.0.1", port=8000)
    assert app.own_https_origin == "https://orchestrator.example.com"
    assert app.refusal("https://orchestrator.example.com/api/v1/jobs") == OWN
    assert app.refusal("https://orchestrator.example.com/demo/order.html") is None


async def test_a_denied_range_refuses_a_name_that_resolves_into_it() -> None:
    policy = UrlPolicy.build(denied=("127.0.0.0/8",))
    assert await refusal(policy, "http://localhost:5000/") == (
        "localhost resolves to 127.0.0.1, which is on ORCH_DENIED_HOSTS"
    )


async def test_an_allow_list_admits_names_and_ranges_and_refuses_the_rest() -> None:
    policy = UrlPolicy.build(allowed=("*.example.org", "10.0.0.0/8"), denied=("10.9.0.0/16",))
    assert await refusal(policy, "http://10.1.2.3/") is None
    assert await refusal(policy, "http://10.9.1.1/") == "the address 10.9.1.1 is on ORCH_DENIED_HOSTS"
    assert await refusal(policy, "http://192.168.1.1/") == "the host 192.168.1.1 is not on ORCH_ALLOWED_HOSTS"
    assert await refusal(policy, "http://localhost/") == "the host localhost is not on ORCH_ALLOWED_HOSTS"
    assert policy.refusal("https://wiki.example.org/") is None


async def test_an_allowed_address_lifts_a_built_in_refusal_but_an_allowed_name_does_not() -> None:
    by_address = UrlPolicy.build(allowed=("169.254.169.254",))
    assert await refusal(by_address, "http://169.254.169.254/latest/meta-data/") is None
    by_name = UrlPolicy.build(allowed=("2852039166", "metadata.google.internal"))  # names, not addresses
    assert await refusal(by_name, "http://2852039166/") == (
        f"2852039166 resolves to 169.254.169.254, which is {METADATA} (ORCH_ALLOWED_HOSTS may allow it)"
    )
    assert by_name.refusal("http://metadata.google.internal/") is None  # the name's own refusal is lifted


async def test_the_deny_list_wins_over_the_allow_list() -> None:
    policy = UrlPolicy.build(allowed=("169.254.169.254", "*.example.org"), denied=("169.254.0.0/16", "x.example.org"))
    assert await refusal(policy, "http://169.254.169.254/") == "the address 169.254.169.254 is on ORCH_DENIED_HOSTS"
    assert policy.refusal("http://x.example.org/") == "the host x.example.org is on ORCH_DENIED_HOSTS"


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "exa mple.com", "example.com:8080", "*ample.com"])
def test_a_bad_list_entry_stops_the_start_naming_the_variable(
    entry: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ORCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ORCH_SECRET_KEY", "unit-test-key")
    monkeypatch.setenv("ORCH_DENIED_HOSTS", f"example.org,{entry}")
    with pytest.raises(ValueError, match="^" + re.escape(f"ORCH_DENIED_HOSTS: {entry!r} is not")):
        Settings.from_env()
