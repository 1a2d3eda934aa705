"""The route document's JSON Schema (docs/route-document.schema.json) and
`hipache routes check` agree on a corpus (route_docs/):

- valid/: both accept;
- invalid/: both refuse, and each document breaks one rule: every error the
  schema reports and every error the command lists is at (or inside, or
  around) the one place named below;
- cli_only/: the schema accepts what only the command can check (regular
  expressions that do not compile, backendRequest past request, repeated
  header names, Host and hop-by-hop headers, URLs and host names that do
  not parse, unclean paths, a mirror fraction above 1, integers written as 1.0, a document over 4 MiB, IP
  networks that do not parse, password entries that are not hashes, a rate
  limit period out of range), and the command refuses it;
- multi_error.json: the command lists every error, not only the first.

The command's contract: `hipache routes check FILE|-` exits 0 when the
document is valid (printing nothing or one line); 1 when it is not, with
one error a line on stderr, `<JSON pointer>: <message>` (the whole
document: an empty pointer or `/`); 2 when the file cannot be read, with
a message naming it. The document in docs/routes.md is valid/docs_example.json,
the one in docs/policies.md valid/policies_docs_example.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from helpers import ROOT, bin_dir, run

SCHEMA_FILE = ROOT / "docs" / "route-document.schema.json"
CORPUS = Path(__file__).resolve().parent / "route_docs"

# An error line: a JSON pointer (empty for the whole document), ": ", a message.
ERROR_LINE = re.compile(r"^(?P<pointer>(/[^:\s]*)?): \S")

# invalid/: the one place each document is wrong.
INVALID = {
    "not_an_object": "",
    "unknown_top_level_field": "",
    "unknown_rule_field": "/rules/0",
    "unknown_match_field": "/rules/0/matches/0",
    "unknown_backend_field": "/rules/0/backends/0",
    "proxy_protocol_v3": "/rules/0/proxyProtocol",
    "version_2": "/version",
    "version_string": "/version",
    "missing_id": "",
    "id_empty": "/id",
    "id_not_string": "/id",
    "missing_rules": "",
    "rules_not_array": "/rules",
    "too_many_rules": "/rules",
    "path_type_unknown": "/rules/0/matches/0/path/type",
    "path_value_without_slash": "/rules/0/matches/0/path/value",
    "header_match_type_unknown": "/rules/0/matches/0/headers/0/type",
    "header_match_without_value": "/rules/0/matches/0/headers/0",
    "header_match_name_not_token": "/rules/0/matches/0/headers/0/name",
    "query_param_name_empty": "/rules/0/matches/0/queryParams/0/name",
    "too_many_matches": "/rules/0/matches",
    "too_many_header_conditions": "/rules/0/matches/0/headers",
    "method_not_token": "/rules/0/matches/0/method",
    "backend_url_and_invalid": "/rules/0/backends/0",
    "backend_neither_url_nor_invalid": "/rules/0/backends/0",
    "weight_negative": "/rules/0/backends/0/weight",
    "weight_too_large": "/rules/0/backends/0/weight",
    "weight_not_integer": "/rules/0/backends/0/weight",
    "filter_type_typo": "/rules/0/filters/0",
    "filter_without_type": "/rules/0/filters/0",
    "filter_field_of_another_type": "/rules/0/filters/0",
    "filter_twice": "/rules/0/filters",
    "rewrite_and_redirect": "/rules/0/filters",
    "replace_prefix_with_exact_match": "/rules/0",
    "header_name_not_token": "/rules/0/filters/0/set/0/name",
    "header_value_control_character": "/rules/0/filters/0/add/0/value",
    "remove_not_names": "/rules/0/filters/0/remove",
    "redirect_status_300": "/rules/0/filters/0/statusCode",
    "redirect_scheme_ftp": "/rules/0/filters/0/scheme",
    "redirect_port_0": "/rules/0/filters/0/port",
    "redirect_port_65536": "/rules/0/filters/0/port",
    "path_modifier_type_unknown": "/rules/0/filters/0/path/type",
    "path_modifier_value_without_slash": "/rules/0/filters/0/path/value",
    "path_modifier_without_value": "/rules/0/filters/0/path",
    "mirror_without_url": "/rules/0/filters/0",
    "mirror_percent_101": "/rules/0/filters/0/percent",
    "mirror_percent_not_integer": "/rules/0/filters/0/percent",
    "too_many_filters": "/rules/0/filters",
    "too_many_set_headers": "/rules/0/filters/0/set",
    "mirror_percent_and_fraction": "/rules/0/filters/0",
    "mirror_fraction_denominator_0": "/rules/0/filters/0/fraction/denominator",
    "mirror_fraction_negative": "/rules/0/filters/0/fraction/numerator",
    "duration_in_words": "/rules/0/timeouts/request",
    "duration_without_unit": "/rules/0/timeouts/backendRequest",
    "timeouts_unknown_field": "/rules/0/timeouts",
    "retry_attempts_11": "/rules/0/retry/attempts",
    "retry_code_600": "/rules/0/retry/codes/1",
    "retry_code_399": "/rules/0/retry/codes/0",
    "retry_backoff_decimal": "/rules/0/retry/backoff",
    "max_body_size_negative": "/rules/0/maxBodySize",
    "protocol_unknown": "/rules/0/protocol",
    "policies_not_object": "/rules/0/policies",
    # Access policies (docs/policies.md), at the top level and in a rule.
    "host_policies_not_object": "/policies",
    "host_policies_unknown_kind": "/policies",
    "policies_unknown_kind": "/rules/0/policies",
    "ip_allow_list_not_array": "/rules/0/policies/ipAllowList",
    "ip_allow_list_not_string": "/rules/0/policies/ipAllowList/0",
    "ip_deny_list_hostname": "/rules/0/policies/ipDenyList/1",
    "ip_deny_list_with_space": "/rules/0/policies/ipDenyList/0",
    "basic_auth_without_users": "/rules/0/policies/basicAuth",
    "basic_auth_unknown_field": "/rules/0/policies/basicAuth",
    "basic_auth_users_not_array": "/rules/0/policies/basicAuth/users",
    "basic_auth_realm_quote": "/rules/0/policies/basicAuth/realm",
    "forward_auth_without_url": "/rules/0/policies/forwardAuth",
    "forward_auth_method_not_token": "/rules/0/policies/forwardAuth/method",
    "forward_auth_header_not_token": "/rules/0/policies/forwardAuth/requestHeaders/0",
    "forward_auth_sign_in_relative": "/rules/0/policies/forwardAuth/signIn",
    "forward_auth_timeout_in_words": "/rules/0/policies/forwardAuth/timeout",
    "rate_limit_without_requests": "/rules/0/policies/rateLimit",
    "rate_limit_requests_0": "/rules/0/policies/rateLimit/requests",
    "rate_limit_requests_too_large": "/rules/0/policies/rateLimit/requests",
    "rate_limit_burst_negative": "/rules/0/policies/rateLimit/burst",
    "rate_limit_period_decimal": "/rules/0/policies/rateLimit/period",
    "rate_limit_key_unknown": "/rules/0/policies/rateLimit/key",
    "rate_limit_on_redis_down_unknown": "/rules/0/policies/rateLimit/onRedisDown",
    "affinity_empty": "/rules/0/policies/affinity",
    "affinity_two_kinds": "/rules/0/policies/affinity",
    "affinity_client_address_false": "/rules/0/policies/affinity/clientAddress",
    "affinity_header_not_token": "/rules/0/policies/affinity/header",
    "affinity_cookie_name_not_token": "/rules/0/policies/affinity/cookie/name",
    "affinity_cookie_path_relative": "/rules/0/policies/affinity/cookie/path",
    "affinity_cookie_path_semicolon": "/rules/0/policies/affinity/cookie/path",
    "affinity_cookie_same_site_lowercase": "/rules/0/policies/affinity/cookie/sameSite",
    "affinity_cookie_same_site_none_without_secure": "/rules/0/policies/affinity/cookie",
    "affinity_cookie_same_site_none_not_secure": "/rules/0/policies/affinity/cookie",
    "affinity_cookie_secure_string": "/rules/0/policies/affinity/cookie/secure",
    "cors_without_allow_origins": "/rules/0/policies/cors",
    "cors_origin_without_scheme": "/rules/0/policies/cors/allowOrigins/0",
    "cors_origin_with_path": "/rules/0/policies/cors/allowOrigins/0",
    "cors_origin_bare_wildcard": "/rules/0/policies/cors/allowOrigins/0",
    "cors_method_not_token": "/rules/0/policies/cors/allowMethods/0",
    "cors_credentials_string": "/rules/0/policies/cors/allowCredentials",
    "cors_max_age_over_a_year": "/rules/0/policies/cors/maxAge",
    "hsts_without_max_age": "/rules/0/policies/hsts",
    "hsts_max_age_too_large": "/rules/0/policies/hsts/maxAge",
    "hsts_field_case_typo": "/rules/0/policies/hsts",
    "security_headers_not_array": "/rules/0/policies/securityHeaders",
    "security_header_without_value": "/rules/0/policies/securityHeaders/0",
    "security_header_value_newline": "/rules/0/policies/securityHeaders/0/value",
    "error_pages_not_object": "/rules/0/policies/errorPages",
    "error_page_status_200": "/rules/0/policies/errorPages",
    "error_page_status_600": "/rules/0/policies/errorPages",
    "error_page_not_string": "/rules/0/policies/errorPages/503",
}

# cli_only/: valid for the schema; the one place the command finds wrong.
# (weight_written_as_float: 2.0 is an integer to a JSON Schema, a float to
# the command.)
CLI_ONLY = {
    "path_regex_unclosed": "/rules/0/matches/0/path",
    "header_regex_unclosed": "/rules/0/matches/0/headers/0",
    "query_regex_backreference": "/rules/0/matches/0/queryParams/0",
    "path_regex_too_large": "/rules/0/matches/0/path",
    "backend_request_exceeds_request": "/rules/0/timeouts",
    "duplicate_match_header": "/rules/0/matches/0/headers",
    "duplicate_set_header": "/rules/0/filters/0/set",
    "set_host": "/rules/0/filters/0/set/0",
    "remove_connection": "/rules/0/filters/0/remove/0",
    "add_transfer_encoding": "/rules/0/filters/0/add/0",
    "path_value_with_query": "/rules/0/matches/0/path",
    "path_value_dot_segment": "/rules/0/matches/0/path",
    "redirect_hostname_with_port": "/rules/0/filters/0/hostname",
    "mirror_fraction_above_one": "/rules/0/filters/0/fraction",
    "weight_written_as_float": "/rules/0/backends/0/weight",
    "backend_url_ftp": "/rules/0/backends/0",
    "mirror_url_without_scheme": "/rules/0/filters/0",
    # Policies: networks that do not parse, password entries that are not
    # hashes (the schema leaves them alone: a validator would quote a
    # password written by mistake), URLs, a period out of range, headers
    # the proxy owns or repeated.
    "ip_allow_list_prefix_33": "/rules/0/policies/ipAllowList/0",
    "ip_deny_list_octet_300": "/rules/0/policies/ipDenyList/1",
    "ip_allow_list_ipv6_prefix_129": "/rules/0/policies/ipAllowList/0",
    "host_ip_deny_list_prefix_33": "/policies/ipDenyList/0",
    "basic_auth_plain_text_password": "/rules/0/policies/basicAuth/users/1",
    "basic_auth_entry_without_user": "/rules/0/policies/basicAuth/users/0",
    "forward_auth_url_without_scheme": "/rules/0/policies/forwardAuth/url",
    "forward_auth_url_with_fragment": "/rules/0/policies/forwardAuth/url",
    "rate_limit_period_0s": "/rules/0/policies/rateLimit/period",
    "rate_limit_period_over_a_day": "/rules/0/policies/rateLimit/period",
    "rate_limit_requests_written_as_float": "/rules/0/policies/rateLimit/requests",
    "security_header_host": "/rules/0/policies/securityHeaders/0",
    "security_header_transfer_encoding": "/rules/0/policies/securityHeaders/0",
    "security_header_repeated": "/rules/0/policies/securityHeaders/1",
}

# multi_error.json: the rules with an error (rule 2 has none).
MULTI_ERROR_RULES = [0, 1, 3, 4, 5]


def corpus(kind: str) -> list[Path]:
    return sorted((CORPUS / kind).glob("*.json"))


def ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def load(path: Path):
    return json.loads(path.read_text())


def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


def pointer(path) -> str:
    return "".join(f"/{p}" for p in path)


def related(a: str, b: str) -> bool:
    """Whether JSON pointers `a` and `b` are the same place or one holds
    the other (`/` is the whole document, as the empty pointer)."""
    a, b = ("" if a == "/" else a), ("" if b == "/" else b)
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def schema_errors(doc) -> list[str]:
    return [f"{pointer(e.absolute_path)}: {e.message}" for e in validator().iter_errors(doc)]


def check(*args: str, **kw):
    return run([str(bin_dir() / "hipache"), "routes", "check", *args], timeout=30, **kw)


def error_lines(res) -> list[str]:
    """The command's error lines; each must be `<pointer>: <message>`."""
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    bad = [line for line in lines if not ERROR_LINE.match(line)]
    assert not bad, f"stderr lines not `<JSON pointer>: <message>`: {bad}\n{res.stderr}"
    return lines


def line_pointer(line: str) -> str:
    return ERROR_LINE.match(line).group("pointer")


def assert_valid_run(res, what: str) -> None:
    assert res.returncode == 0, f"{what}: exit {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
    assert len(res.stdout.splitlines()) <= 1, f"{what}: more than a one-line summary on stdout:\n{res.stdout}"


def assert_invalid_run(res, what: str, where: str | None = None) -> list[str]:
    assert res.returncode == 1, f"{what}: exit {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
    lines = error_lines(res)
    assert lines, f"{what}: exit 1 without an error line on stderr"
    if where is not None:
        elsewhere = [line for line in lines if not related(line_pointer(line), where)]
        assert not elsewhere, f"{what}: errors away from {where!r}: {elsewhere}"
    return lines


# --- the schema itself ----------------------------------------------------------

def test_schema_is_a_valid_draft_2020_12_schema():
    s = schema()
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert s["$id"] == "route-document.schema.json"
    Draft202012Validator.check_schema(s)


def subschemas(node, where="#"):
    """Every schema object under `node` (with where it is)."""
    if isinstance(node, dict):
        yield where, node
        for k, v in node.items():
            if k in ("properties", "$defs"):
                for name, sub in v.items():
                    yield from subschemas(sub, f"{where}/{k}/{name}")
            elif k in ("allOf", "anyOf", "oneOf"):
                for i, sub in enumerate(v):
                    yield from subschemas(sub, f"{where}/{k}/{i}")
            elif k in ("items", "contains", "not", "if", "then", "else"):
                yield from subschemas(v, f"{where}/{k}")


def resolve(s: dict, node: dict) -> dict:
    while "$ref" in node and len(node) <= 2:  # {"$ref"} or {"$ref", "description"}
        target = s
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_schema_objects_reject_unknown_fields():
    """Every object of the document is closed. A filter is closed by the
    schema of its type: one per type, each closed."""
    s = schema()
    open_objects = []
    for where, node in subschemas(s):
        if node.get("type") != "object" or node.get("additionalProperties") is False:
            continue
        branches = [resolve(s, b["then"]) for b in node.get("allOf", []) if "then" in b]
        types = node.get("properties", {}).get("type", {}).get("enum")
        closed = (types and set(node["properties"]) == {"type"}
                  and sorted(b["properties"]["type"]["const"] for b in branches) == sorted(types)
                  and all(b.get("additionalProperties") is False for b in branches))
        if not closed:
            open_objects.append(where)
    assert not open_objects, f"objects that accept unknown fields: {open_objects}"


def test_schema_describes_every_property():
    undescribed = [f"{where}/properties/{name}" for where, node in subschemas(schema())
                   for name, prop in node.get("properties", {}).items()
                   if node.get("type") == "object" and "description" not in prop]
    assert not undescribed, f"properties without a description: {undescribed}"


def test_schema_names_the_command_for_what_it_cannot_check():
    description = schema()["description"]
    assert "hipache routes check" in description
    for needle in ("regular expressions compile", "backendRequest", "Host", "hop-by-hop"):
        assert needle in description, needle


# --- the corpus ----------------------------------------------------------------

def test_corpus_is_complete():
    """Every file of invalid/ and cli_only/ has its place above (and every
    place its file), and each part has the documents it should."""
    assert set(ids(corpus("invalid"))) == set(INVALID)
    assert set(ids(corpus("cli_only"))) == set(CLI_ONLY)
    assert len(corpus("valid")) >= 8
    assert len(INVALID) >= 15
    assert len(CLI_ONLY) >= 6
    assert (CORPUS / "multi_error.json").is_file()


@pytest.mark.parametrize("doc, example", [("routes.md", "docs_example.json"),
                                          ("policies.md", "policies_docs_example.json")])
def test_docs_example_is_in_the_corpus(doc, example):
    """The first JSON block of docs/routes.md is valid/docs_example.json, and
    that of docs/policies.md valid/policies_docs_example.json."""
    text = (ROOT / "docs" / doc).read_text()
    block = re.search(r"^```json\n(.*?)^```$", text, re.S | re.M)
    assert block, f"no ```json block in docs/{doc}"
    assert json.loads(block.group(1)) == load(CORPUS / "valid" / example)


@pytest.mark.parametrize("path", corpus("valid"), ids=ids(corpus("valid")))
def test_valid_document_passes_the_schema(path):
    errors = schema_errors(load(path))
    assert not errors, errors


@pytest.mark.parametrize("path", corpus("valid"), ids=ids(corpus("valid")))
def test_valid_document_passes_the_cli(path):
    assert_valid_run(check(str(path)), path.name)


@pytest.mark.parametrize("path", corpus("invalid"), ids=ids(corpus("invalid")))
def test_invalid_document_fails_the_schema(path):
    where = INVALID[path.stem]
    errors = validator().iter_errors(load(path))
    pointers = [(pointer(e.absolute_path), e.message) for e in errors]
    assert pointers, f"{path.name} passes the schema"
    elsewhere = [p for p in pointers if not related(p[0], where)]
    assert not elsewhere, f"{path.name}: schema errors away from {where!r}: {elsewhere}"


@pytest.mark.parametrize("path", corpus("invalid"), ids=ids(corpus("invalid")))
def test_invalid_document_fails_the_cli(path):
    assert_invalid_run(check(str(path)), path.name, INVALID[path.stem])


@pytest.mark.parametrize("path", corpus("cli_only"), ids=ids(corpus("cli_only")))
def test_cli_only_document_passes_the_schema(path):
    errors = schema_errors(load(path))
    assert not errors, f"{path.name} is refused by the schema already (move it to invalid/): {errors}"


@pytest.mark.parametrize("path", corpus("cli_only"), ids=ids(corpus("cli_only")))
def test_cli_only_document_fails_the_cli(path):
    assert_invalid_run(check(str(path)), path.name, CLI_ONLY[path.stem])


def test_multi_error_document_passes_the_schema():
    """Its errors are the command's own, found after the document decoded."""
    errors = schema_errors(load(CORPUS / "multi_error.json"))
    assert not errors, errors


def test_cli_lists_every_error():
    res = check(str(CORPUS / "multi_error.json"))
    lines = assert_invalid_run(res, "multi_error.json")
    assert len(lines) >= len(MULTI_ERROR_RULES) >= 4, res.stderr
    rules = {int(m.group(1)) for line in lines if (m := re.match(r"/rules/(\d+)(/|$)", line_pointer(line)))}
    assert rules == set(MULTI_ERROR_RULES), f"errors in rules {sorted(rules)}, expected {MULTI_ERROR_RULES}:\n{res.stderr}"
    outside = [line for line in lines if not line_pointer(line).startswith("/rules/")]
    assert not outside, f"errors outside the rules: {outside}"


# --- the command's input ----------------------------------------------------------

def test_cli_reads_standard_input():
    assert_valid_run(check("-", input=(CORPUS / "valid" / "docs_example.json").read_text()), "valid document on stdin")
    assert_invalid_run(check("-", input=(CORPUS / "invalid" / "redirect_status_300.json").read_text()),
                       "invalid document on stdin", INVALID["redirect_status_300"])


def test_cli_missing_file_exits_2_naming_it(tmp_path):
    missing = tmp_path / "no-such-routes.json"
    res = check(str(missing))
    assert res.returncode == 2, f"exit {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
    assert "no-such-routes.json" in res.stderr, res.stderr


def test_cli_refuses_a_document_over_4_mib(tmp_path):
    """The size limit: valid for the schema, refused by the command."""
    big = tmp_path / "big.json"
    text = (CORPUS / "valid" / "empty_rules.json").read_text()
    big.write_text(text + " " * (4 * 1024 * 1024))
    assert not schema_errors(json.loads(big.read_text()))
    assert_invalid_run(check(str(big)), "a document over 4 MiB", "")


def test_cli_refuses_a_document_that_does_not_parse(tmp_path):
    """Text that is not JSON is an invalid document (1), not an unreadable
    file (2)."""
    broken = tmp_path / "broken.json"
    broken.write_text('{"version": 1, "id": "tenant:x", "rules": [')
    res = check(str(broken))
    assert res.returncode == 1, f"exit {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
    assert res.stderr.strip(), "exit 1 without an error on stderr"
