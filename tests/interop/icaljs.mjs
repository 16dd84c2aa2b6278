// Reads every *.ics in the folder given as argument with ical.js (Thunderbird's parser)
// and prints one JSON line per file: whether it parsed, and for each VEVENT/VTODO the
// start, end and due as ical.js resolves them (zone, wall time, UTC instant), and the
// first occurrences of a series.
//
// Run by tests/interop_clients.rs; nothing here decides pass or fail.
import fs from 'node:fs';
import path from 'node:path';
import ICAL from 'ical.js';

function timeOf(component, name) {
  const prop = component.getFirstProperty(name);
  if (!prop) return null;
  const value = prop.getFirstValue();
  if (!value || typeof value.toUnixTime !== 'function') return null;
  const zone = value.zone;
  return {
    tzid: prop.getParameter('tzid') || null,
    // ical.js's own verdict: the zone it found for the TZID, "floating" when none.
    zone: zone ? zone.tzid : null,
    is_date: value.isDate,
    local: value.toString(),
    unix: value.toUnixTime(),
  };
}

const dir = process.argv[2];
for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.ics')).sort()) {
  const out = { file, ok: false, error: null, components: [] };
  try {
    const text = fs.readFileSync(path.join(dir, file), 'utf8');
    const root = new ICAL.Component(ICAL.parse(text));
    if (root.name !== 'vcalendar') throw new Error(`root is ${root.name}`);
    for (const comp of root.getAllSubcomponents()) {
      if (comp.name !== 'vevent' && comp.name !== 'vtodo') continue;
      const rid = comp.getFirstProperty('recurrence-id');
      // The first occurrences of a series, as Thunderbird lays them out: the wall time
      // stays, the UTC instant follows the zone's DST rules from the VTIMEZONE.
      const occurrences = [];
      if (comp.hasProperty('rrule') && comp.hasProperty('dtstart')) {
        const it = new ICAL.Event(comp).iterator();
        for (let next = it.next(); next && occurrences.length < 60; next = it.next()) {
          occurrences.push({ local: next.toString(), unix: next.toUnixTime() });
        }
      }
      out.components.push({
        type: comp.name,
        uid: comp.getFirstPropertyValue('uid'),
        recurrence_id: rid ? rid.getFirstValue().toString() : null,
        dtstart: timeOf(comp, 'dtstart'),
        dtend: timeOf(comp, 'dtend'),
        due: timeOf(comp, 'due'),
        dtstamp: timeOf(comp, 'dtstamp'),
        occurrences,
      });
    }
    out.method = root.getFirstPropertyValue('method');
    out.ok = true;
  } catch (e) {
    out.error = String(e && e.stack ? e.stack.split('\n')[0] : e);
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}
