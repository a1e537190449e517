"""Object metadata as the server validates it: names, generateName, labels.

- `metadata.name`: a DNS-1123 subdomain (≤ 253 characters: lower-case alphanumerics, '-'
  and '.') for most kinds, custom resources included; a DNS-1123 label (≤ 63, no '.')
  for namespaces; a DNS-1035 label (a label starting with a letter) for services.
- `metadata.generateName`: when no name is given, the name is the prefix (cut to 58
  characters) plus 5 random characters, and must then be valid itself.
- label keys: an optional DNS subdomain prefix and '/', then a name of ≤ 63 characters
  (alphanumerics, '-', '_', '.', starting and ending with an alphanumeric); values: empty
  or the same form, ≤ 63 characters.

Failures are causes for a 422 Invalid with the messages of the real server.
"""

from __future__ import annotations

import re
import secrets
import string
from typing import Any

from arks_devcluster.resources import ResourceType

Obj = dict[str, Any]
Cause = dict[str, str]

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL = re.compile(f"^{_LABEL}$")
DNS1123_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_RANDOM = string.ascii_lowercase + string.digits

_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*"
    "[a-z0-9])?)*')"
)
_LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_DNS1035_MESSAGE = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
    "an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
_QUALIFIED_MESSAGE = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)


def generate_name(prefix: str) -> str:
    return prefix[:58] + "".join(secrets.choice(_RANDOM) for _ in range(5))


def _invalid(field: str, value: str, message: str) -> Cause:
    return {
        "reason": "FieldValueInvalid",
        "message": f'Invalid value: "{value}": {message}',
        "field": field,
    }


def name_causes(rtype: ResourceType, name: str, field: str = "metadata.name") -> list[Cause]:
    if rtype.group == "" and rtype.plural == "namespaces":
        if len(name) > 63:
            return [_invalid(field, name, "must be no more than 63 characters")]
        return [] if DNS1123_LABEL.match(name) else [_invalid(field, name, _LABEL_MESSAGE)]
    if rtype.group == "" and rtype.plural == "services":
        if len(name) > 63:
            return [_invalid(field, name, "must be no more than 63 characters")]
        return [] if DNS1035_LABEL.match(name) else [_invalid(field, name, _DNS1035_MESSAGE)]
    if len(name) > 253:
        return [_invalid(field, name, "must be no more than 253 characters")]
    return [] if DNS1123_SUBDOMAIN.match(name) else [_invalid(field, name, _SUBDOMAIN_MESSAGE)]


def _label_key_causes(key: str, field: str) -> list[Cause]:
    prefix, _, name = key.rpartition("/")
    causes = []
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        causes.append(_invalid(field, key, "prefix part " + _SUBDOMAIN_MESSAGE))
    if len(name) > 63:
        causes.append(_invalid(field, key, "name part must be no more than 63 characters"))
    elif not QUALIFIED_NAME.match(name):
        causes.append(_invalid(field, key, _QUALIFIED_MESSAGE))
    return causes


def label_causes(labels: Any) -> list[Cause]:
    if not labels:
        return []
    if not isinstance(labels, dict):
        return [_invalid("metadata.labels", str(labels), "must be a map of strings")]
    causes = []
    for key, value in labels.items():
        causes += _label_key_causes(str(key), "metadata.labels")
        text = "" if value is None else str(value)
        if len(text) > 63:
            causes.append(_invalid("metadata.labels", text, "must be no more than 63 characters"))
        elif not LABEL_VALUE.match(text):
            causes.append(
                _invalid(
                    "metadata.labels",
                    text,
                    "a valid label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an "
                    "alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
                    "regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?"
                    "[A-Za-z0-9])?')",
                )
            )
    return causes


def metadata_causes(rtype: ResourceType, obj: Obj) -> list[Cause]:
    """Name (or generateName) and labels of an object about to be written."""
    meta = obj.get("metadata") or {}
    causes: list[Cause] = []
    name = meta.get("name")
    if name:
        causes += name_causes(rtype, str(name))
    elif meta.get("generateName"):
        prefix = str(meta["generateName"])
        causes += name_causes(rtype, generate_name(prefix), "metadata.generateName")
    causes += label_causes(meta.get("labels"))
    return causes
