"""Reads every *.ics in the folder given as argument with libical (Evolution's library,
through ICalGLib) and prints one JSON line per file: whether it parsed, the result of
libical's iTIP restriction check (RFC 5546's tables) with its X-LIC-ERROR texts, and
for each VEVENT/VTODO the start, end and due as libical resolves them.

Run by tests/interop_clients.rs; nothing here decides pass or fail.
"""

import json
import os
import sys

import gi

gi.require_version("ICalGLib", "3.0")
from gi.repository import ICalGLib as I  # noqa: E402


def errors_of(comp):
    """Every X-LIC-ERROR text in comp and below."""
    out = []
    prop = comp.get_first_property(I.PropertyKind.XLICERROR_PROPERTY)
    while prop is not None:
        out.append(prop.get_xlicerror())
        prop = comp.get_next_property(I.PropertyKind.XLICERROR_PROPERTY)
    child = comp.get_first_component(I.ComponentKind.ANY_COMPONENT)
    while child is not None:
        out.extend(errors_of(child))
        child = comp.get_next_component(I.ComponentKind.ANY_COMPONENT)
    return out


def time_of(comp, kind, getter):
    prop = comp.get_first_property(kind)
    if prop is None:
        return None
    t = getter(comp)
    zone = t.get_timezone()
    tzid = None
    param = prop.get_first_parameter(I.ParameterKind.TZID_PARAMETER)
    if param is not None:
        tzid = param.get_tzid()
    return {
        "tzid": tzid,
        "zone": zone.get_tzid() if zone is not None else None,
        "is_date": bool(t.is_date()),
        "unix": t.as_timet_with_zone(zone) if zone is not None else t.as_timet(),
    }


def read(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    out = {"file": os.path.basename(path), "ok": False, "error": None, "components": []}
    root = I.Component.new_from_string(text)
    if root is None or root.isa() != I.ComponentKind.VCALENDAR_COMPONENT:
        out["error"] = "not a VCALENDAR"
        return out
    out["parse_errors"] = errors_of(root)
    out["ok"] = not out["parse_errors"]
    kinds = (I.ComponentKind.VEVENT_COMPONENT, I.ComponentKind.VTODO_COMPONENT)
    child = root.get_first_component(I.ComponentKind.ANY_COMPONENT)
    while child is not None:
        if child.isa() in kinds:
            out["components"].append({
                "uid": child.get_uid(),
                "dtstart": time_of(child, I.PropertyKind.DTSTART_PROPERTY, lambda c: c.get_dtstart()),
                "dtend": time_of(child, I.PropertyKind.DTEND_PROPERTY, lambda c: c.get_dtend()),
                "due": time_of(child, I.PropertyKind.DUE_PROPERTY, lambda c: c.get_due()),
            })
        child = root.get_next_component(I.ComponentKind.ANY_COMPONENT)
    out["restriction_ok"] = bool(I.restriction_check(root))
    # The check writes what it found as X-LIC-ERROR properties; parse errors were
    # collected before, so these are the restriction failures.
    out["restriction_errors"] = [e for e in errors_of(root) if e not in out["parse_errors"]]
    return out


def main():
    folder = sys.argv[1]
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".ics"):
            continue
        try:
            result = read(os.path.join(folder, name))
        except Exception as e:  # a crash in the reader is a result too
            result = {"file": name, "ok": False, "error": repr(e), "components": []}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
