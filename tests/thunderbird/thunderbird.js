// Installed once into each Thunderbird's main window (chrome context, through Marionette)
// by harness.py. Every action calls Thunderbird's own code: the main window's
// doTransaction with the extResponse the event dialog computes, setContextPartstat with a
// menu item of the attendance menu, and cal.itip.processItipItem + cal.itip.executeAction
// as the iMIP bar calls them. What is not Thunderbird's code here only stands in for a
// person: it answers the two modal questions Thunderbird asks (send a notification?
// item changed on the server?) and records that they were asked.
/* global window, document, Services, ChromeUtils, Ci, Cc */
"use strict";

const { cal } = ChromeUtils.importESModule("resource:///modules/calendar/calUtils.sys.mjs");
const { CalEvent } = ChromeUtils.importESModule("resource:///modules/CalEvent.sys.mjs");
const { CalAttendee } = ChromeUtils.importESModule("resource:///modules/CalAttendee.sys.mjs");
const { MailServices } = ChromeUtils.importESModule("resource:///modules/MailServices.sys.mjs");

const T = {
  // Every "Item changed on server" dialog Thunderbird opened (calendar-conflicts-dialog).
  conflicts: [],
  // Every other question Thunderbird asked through the prompt service.
  prompts: [],
  // How the person answers the conflict dialog: true = "Submit my changes anyway".
  overwriteOnConflict: true,
};
window.__imipdTest = T;

// The conflict dialog: cal.provider.promptOverwrite opens it with window.openDialog on
// the calendar window (calProviderUtils.sys.mjs) and reads args.overwrite afterwards. A
// modal window cannot be clicked headless, so the opening is recorded and answered here.
const calWindow = cal.window.getCalendarWindow() || window;
for (const w of new Set([window, calWindow])) {
  const realOpenDialog = w.openDialog.bind(w);
  w.openDialog = function (url, name, features, ...rest) {
    if (String(url).includes("calendar-conflicts-dialog")) {
      const args = rest[0];
      T.conflicts.push({
        mode: args.mode,
        title: args.item && args.item.title,
        at: Date.now(),
      });
      args.overwrite = T.overwriteOnConflict;
      return null;
    }
    if (String(url).startsWith("chrome://calendar/")) {
      // Any other calendar dialog would wait for a click that never comes.
      T.prompts.push({ kind: "dialog", url: String(url) });
      throw new Error(`Thunderbird opened a dialog the test cannot answer: ${url}`);
    }
    return realOpenDialog(url, name, features, ...rest);
  };
}

// The prompt service: calItipEmailTransport asks "send a notification?" with confirmEx
// when an action has no response mode (USER), e.g. the dialog's Delete. The person says
// yes (button 0); the question is recorded.
const realPrompt = Services.prompt;
const answeringPrompt = {};
for (const name in realPrompt) {
  const value = realPrompt[name];
  answeringPrompt[name] = typeof value === "function" ? value.bind(realPrompt) : value;
}
answeringPrompt.confirmEx = (parent, title, text) => {
  T.prompts.push({ kind: "confirmEx", title, text });
  return 0;
};
answeringPrompt.confirm = (parent, title, text) => {
  T.prompts.push({ kind: "confirm", title, text });
  return true;
};
answeringPrompt.alert = (parent, title, text) => {
  T.prompts.push({ kind: "alert", title, text });
};
Object.defineProperty(Services, "prompt", { value: answeringPrompt, configurable: true });
T.promptReplaced = Services.prompt === answeringPrompt;

T.identity = () => MailServices.accounts.defaultAccount.defaultIdentity;

T.addLogin = async (origin, realm, user, password) => {
  const info = Cc["@mozilla.org/login-manager/loginInfo;1"].createInstance(Ci.nsILoginInfo);
  info.init(origin, null, realm, user, password, "", "");
  await Services.logins.addLoginAsync(info);
};

const observer = handlers =>
  Object.assign(
    {
      QueryInterface: ChromeUtils.generateQI(["calIObserver"]),
      onStartBatch() {},
      onEndBatch() {},
      onLoad() {},
      onAddItem() {},
      onModifyItem() {},
      onDeleteItem() {},
      onError() {},
      onPropertyChanged() {},
      onPropertyDeleting() {},
    },
    handlers
  );

const sleep = ms => new Promise(resolve => window.setTimeout(resolve, ms));

// The one calendar of this profile (a second one would make the iMIP bar ask which).
T.calendar = null;

// What the "New Calendar" wizard does for a CalDAV calendar at `url`: create, give it the
// mail identity, register. Any calendar registered before is removed first.
T.register = async (name, url, user) => {
  for (const old of cal.manager.getCalendars()) {
    cal.manager.removeCalendar(old);
  }
  const created = cal.manager.createCalendar("caldav", Services.io.newURI(url));
  created.name = name;
  created.setProperty("username", user);
  created.setProperty("imip.identity.key", T.identity().key);
  cal.manager.registerCalendar(created);
  const calendar = cal.manager.getCalendarById(created.id);
  T.calendar = calendar;
  // Wait (bounded: a deadlock guard) until the server was asked about its features.
  const uncached = calendar.wrappedJSObject.mUncachedCalendar
    ? calendar.wrappedJSObject.mUncachedCalendar.wrappedJSObject
    : calendar.wrappedJSObject;
  for (let i = 0; !uncached.checkedServerInfo; i++) {
    if (i > 600) {
      throw new Error(`calendar ${url} never finished asking the server about itself`);
    }
    await sleep(100);
  }
  await T.refresh();
  return {
    autoSchedule: !!uncached.hasAutoScheduling,
    readOnly: calendar.readOnly,
    status: calendar.getProperty("currentStatus"),
    canNotify: T.canNotify(calendar, T.newEvent("probe", "probe", "20300101T100000Z", [])),
  };
};

// calICalendar.refresh() (the "Synchronize" button), resolved on its onLoad.
T.refresh = () =>
  new Promise((resolve, reject) => {
    const calendar = T.calendar;
    const timer = window.setTimeout(() => reject(new Error("refresh never finished")), 60000);
    const obs = observer({
      onLoad() {
        window.clearTimeout(timer);
        calendar.removeObserver(obs);
        resolve();
      },
    });
    calendar.addObserver(obs);
    calendar.refresh();
  });

T.getItem = async uid => {
  const item = await T.calendar.getItem(uid);
  return item || null;
};

// What the item shows: its attendees' PARTSTAT, its start, its SEQUENCE.
T.show = async uid => {
  const item = await T.getItem(uid);
  if (!item) {
    return null;
  }
  const partstats = {};
  for (const a of item.getAttendees()) {
    partstats[a.id.replace(/^mailto:/i, "").toLowerCase()] = a.participationStatus;
  }
  return {
    title: item.title,
    start: item.startDate.icalString,
    sequence: item.getProperty("SEQUENCE"),
    partstats,
    organizer: item.organizer && item.organizer.id,
    organizerScheduleAgent: item.organizer && item.organizer.getProperty("SCHEDULE-AGENT"),
    sendInvitations: item.getProperty("X-MOZ-SEND-INVITATIONS"),
  };
};

const attendee = (address, name, partstat, isOrganizer) => {
  const a = new CalAttendee();
  a.id = `mailto:${address}`;
  a.commonName = name;
  a.isOrganizer = !!isOrganizer;
  a.participationStatus = partstat;
  a.role = isOrganizer ? "CHAIR" : "REQ-PARTICIPANT";
  a.userType = "INDIVIDUAL";
  if (!isOrganizer && partstat == "NEEDS-ACTION") {
    a.rsvp = "TRUE";
  }
  return a;
};

// A new event as the event dialog builds it: the calendar's organizer (the mail
// identity), the organizer as an accepted attendee, and the invited attendees.
T.newEvent = (uid, title, start, invited) => {
  const item = new CalEvent();
  item.id = uid;
  item.title = title;
  item.startDate = cal.createDateTime(start);
  const end = item.startDate.clone();
  end.hour += 1;
  item.endDate = end;
  const me = T.identity();
  if (invited.length) {
    item.organizer = attendee(me.email, me.fullName, "ACCEPTED", true);
    item.addAttendee(attendee(me.email, me.fullName, "ACCEPTED", false));
    for (const [address, name] of invited) {
      item.addAttendee(attendee(address, name, "NEEDS-ACTION", false));
    }
  }
  return item;
};

// calendar-item-iframe.js canNotifyAttendees().
T.canNotify = (calendar, item) => {
  try {
    const scheduling = calendar.QueryInterface(Ci.calISchedulingSupport);
    return scheduling.canNotify("REQUEST", item) && scheduling.canNotify("CANCEL", item);
  } catch (e) {
    return false;
  }
};

// The event dialog's Save (calendar-item-iframe.js loadDialog, updateCalendar, saveItem,
// onCommandSave) for a person who leaves "Notify attendees" as Thunderbird sets it:
// checked when the server schedules (disabled), else from X-MOZ-SEND-INVITATIONS or the
// calendar.itip.notify pref; then the main window's doTransaction, awaited.
T.saveLikeDialog = async (item, originalItem) => {
  const calendar = T.calendar;
  const source = originalItem || item;
  const canNotify = T.canNotify(calendar, source);
  let checked;
  if (canNotify) {
    checked = true;
  } else {
    const prop = source.getProperty("X-MOZ-SEND-INVITATIONS");
    checked =
      !!calendar.getProperty("imip.identity") &&
      (prop === null ? Services.prefs.getBoolPref("calendar.itip.notify", true) : prop == "TRUE");
  }
  const disabled = !(!canNotify && calendar.getProperty("imip.identity"));
  if (item.getAttendees().length > 0) {
    if (disabled) {
      item.deleteProperty("X-MOZ-SEND-INVITATIONS");
    } else {
      item.setProperty("X-MOZ-SEND-INVITATIONS", checked ? "TRUE" : "FALSE");
    }
    if (disabled || !checked) {
      item.deleteProperty("X-MOZ-SEND-INVITATIONS-UNDISCLOSED");
    } else {
      item.setProperty(
        "X-MOZ-SEND-INVITATIONS-UNDISCLOSED",
        Services.prefs.getBoolPref("calendar.itip.separateInvitationPerAttendee") ? "TRUE" : "FALSE"
      );
    }
  }
  // calendar-dialog-utils.js, loaded in the main window.
  window.adaptScheduleAgent(item);
  item.makeImmutable();
  const extResponse = { responseMode: checked ? Ci.calIItipItem.AUTO : Ci.calIItipItem.NONE };
  await window.doTransaction(
    originalItem ? "modify" : "add",
    item,
    calendar,
    originalItem || null,
    null,
    extResponse
  );
  return { canNotify, notify: checked };
};

T.invite = (uid, title, start, invited) =>
  T.saveLikeDialog(T.newEvent(uid, title, start, invited), null);

// The dialog with the event moved by `hours` and saved.
T.move = async (uid, hours) => {
  const original = await T.getItem(uid);
  if (!original) {
    throw new Error(`no event ${uid} to move`);
  }
  const item = original.clone();
  const start = item.startDate.clone();
  start.hour += hours;
  const end = item.endDate.clone();
  end.hour += hours;
  item.startDate = start;
  item.endDate = end;
  return T.saveLikeDialog(item, original);
};

// The dialog with a new title saved (a minor change: what an organizer does right after an
// answer arrived, for the conflict-dialog count).
T.retitle = async (uid, title) => {
  const original = await T.getItem(uid);
  if (!original) {
    throw new Error(`no event ${uid} to edit`);
  }
  const item = original.clone();
  item.title = title;
  return T.saveLikeDialog(item, original);
};

// The dialog with one more attendee invited and saved.
T.addAttendee = async (uid, address, name) => {
  const original = await T.getItem(uid);
  if (!original) {
    throw new Error(`no event ${uid} to edit`);
  }
  const item = original.clone();
  item.addAttendee(attendee(address, name, "NEEDS-ACTION", false));
  return T.saveLikeDialog(item, original);
};

// The dialog's Delete (onCommandDeleteItem): doTransaction("delete") with no response
// mode, as Thunderbird calls it.
T.remove = async uid => {
  const item = await T.getItem(uid);
  if (!item) {
    throw new Error(`no event ${uid} to delete`);
  }
  await window.doTransaction("delete", item, item.calendar, null, null);
};

// The attendance menu's "Accept > Send a response now": a menu item with respvalue and
// respmode=AUTO handed to the main window's setContextPartstat.
T.answer = async (uid, partstat) => {
  const item = await T.getItem(uid);
  if (!item) {
    throw new Error(`no event ${uid} to answer`);
  }
  const target = document.createXULElement("menuitem");
  target.setAttribute("respvalue", partstat);
  target.setAttribute("respmode", "AUTO");
  target.setAttribute("scope", "all-occurrences");
  window.setContextPartstat(target, [item]);
};

// The iMIP bar on a received mail: the itip item as CalMimeConverter makes it from the
// calendar part, cal.itip.initItemFromMsgData with the message's header fields (a stand-in
// for the nsIMsgDBHdr: author, recipients, account), cal.itip.processItipItem, then the
// Accept button's cal.itip.executeAction(window, "ACCEPTED", "AUTO", ...).
T.imipBar = async (ics, method, author, recipients, partstat) => {
  const itipItem = Cc["@mozilla.org/calendar/itip-item;1"].createInstance(Ci.calIItipItem);
  itipItem.init(ics);
  const header = {
    author,
    recipients,
    ccList: "",
    accountKey: MailServices.accounts.defaultAccount.key,
  };
  cal.itip.initItemFromMsgData(itipItem, method, header);
  const found = await new Promise(resolve =>
    cal.itip.processItipItem(itipItem, (item, rc, actionFunc, foundItems) =>
      resolve({ rc, actionFunc, foundItems })
    )
  );
  if (!Components.isSuccessCode(found.rc) || !found.actionFunc) {
    throw new Error(`the iMIP bar offers no action (rc ${found.rc})`);
  }
  const done = new Promise((resolve, reject) => {
    const timer = window.setTimeout(() => reject(new Error("Accept never completed")), 60000);
    const ok = cal.itip.executeAction(
      window,
      partstat,
      "AUTO",
      found.actionFunc,
      itipItem,
      found.foundItems,
      ({ label }) => {
        if (label !== undefined) {
          window.clearTimeout(timer);
          resolve(label);
        }
      }
    );
    if (!ok) {
      window.clearTimeout(timer);
      reject(new Error("executeAction refused"));
    }
  });
  return { method: found.actionFunc.method, label: await done };
};
