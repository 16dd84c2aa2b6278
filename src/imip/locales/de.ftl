# imipd-Mailtexte, Deutsch. Gleiche Nachrichten-IDs wie en.ftl.

## Betreffzeilen

event-with-time = { $title } @ { $when }
subject-invitation = Einladung: { $event }
subject-invitation-delegated = Einladung (delegiert von { $delegator }): { $event }
subject-update = Aktualisierte Einladung: { $event }
subject-add = Neue Termine: { $event }
subject-cancel = Abgesagt: { $event }
subject-reply = { $partstat ->
    [accepted] Zugesagt
    [declined] Abgelehnt
    [tentative] Mit Vorbehalt
    [delegated] Delegiert
    [needs-action] Unentschieden
    [completed] Erledigt
    [in-process] In Bearbeitung
    [failed] Fehlgeschlagen
   *[other] Antwort
  }: { $event }
subject-counter = Neue Zeit vorgeschlagen: { $event }
subject-declinecounter = Vorschlag abgelehnt: { $event }
subject-refresh = Aktualisierung angefordert: { $event }
subject-publish = Veröffentlicht: { $event }

## Erster Satz

intro-invitation = { $organizer } hat Sie zu „{ $title }“ eingeladen.
intro-invitation-delegated = { $organizer } hat Sie zu „{ $title }“ eingeladen: { $delegator } hat die Teilnahme an Sie delegiert.
intro-update = { $organizer } hat „{ $title }“ geändert.
intro-add = { $organizer } hat „{ $title }“ weitere Termine hinzugefügt.
intro-cancel = { $organizer } hat „{ $title }“ abgesagt.
intro-update-moved-time = { $organizer } hat den Termin von „{ $title }“ am { $date } von { $from } auf { $to } verschoben.
intro-update-moved-day = { $organizer } hat den Termin von „{ $title }“ von { $from } auf { $to } verschoben.
intro-update-occurrence = { $organizer } hat den Termin von „{ $title }“ am { $date } geändert.
intro-cancel-occurrence = { $organizer } hat den Termin von „{ $title }“ am { $date } abgesagt.
intro-publish = { $organizer } hat „{ $title }“ veröffentlicht.
intro-reply = { $partstat ->
    [accepted] { $attendee } hat „{ $title }“ zugesagt.
    [declined] { $attendee } hat „{ $title }“ abgelehnt.
    [tentative] { $attendee } hat „{ $title }“ mit Vorbehalt zugesagt.
    [delegated] { $attendee } hat „{ $title }“ an { $delegate } delegiert.
    [needs-action] { $attendee } hat sich zu „{ $title }“ noch nicht entschieden.
    [completed] { $attendee } hat „{ $title }“ erledigt.
    [in-process] { $attendee } bearbeitet „{ $title }“.
    [failed] { $attendee } konnte „{ $title }“ nicht erledigen.
   *[other] { $attendee } hat auf „{ $title }“ geantwortet.
  }
intro-counter = { $attendee } schlägt eine Änderung an „{ $title }“ vor.
intro-declinecounter = { $organizer } hat Ihren Änderungsvorschlag für „{ $title }“ abgelehnt.
intro-refresh = { $attendee } bittet um die aktuelle Fassung von „{ $title }“.

## Beschriftungen

label-title = Titel
label-when = Wann
label-proposed-when = Vorgeschlagene Zeit
label-where = Wo
label-organizer = Organisator
label-attendees = Teilnehmer
label-description = Beschreibung
label-changes = Was sich geändert hat
label-comment = Kommentar
label-repeats = Wiederholung
untitled = (ohne Titel)
no-value = (keine Angabe)
footer = Automatisch versendet für { $sender }. Ihr Kalenderprogramm kann die Kalenderdaten in dieser E-Mail lesen.

# A label in front of its value ("Title: Lunch").
label = { $label }:

## Werte

partstat = { $partstat ->
    [accepted] Zugesagt
    [declined] Abgelehnt
    [tentative] Mit Vorbehalt
    [delegated] Delegiert
    [completed] Erledigt
    [in-process] In Bearbeitung
    [failed] Fehlgeschlagen
   *[needs-action] Antwort ausstehend
  }
delegated-to = delegiert an { $delegate }
attendees-more = { $count ->
    [1] und 1 weitere Person
   *[other] und { $count } weitere Personen
  }
field = { $property ->
    [DTSTART] Beginn
    [DTEND] Ende
    [DUE] Fällig
    [DURATION] Dauer
    [SUMMARY] Titel
    [LOCATION] Ort
    [DESCRIPTION] Beschreibung
    [RRULE] Wiederholung
    [RDATE] Zusätzliche Termine
    [EXDATE] Ausgenommene Termine
    [STATUS] Status
    [URL] Link
   *[other] { $property }
  }
repeat = { $freq ->
    [daily] { $interval ->
        [1] Täglich
       *[other] Alle { $interval } Tage
      }
    [weekly] { $interval ->
        [1] Wöchentlich
       *[other] Alle { $interval } Wochen
      }
    [monthly] { $interval ->
        [1] Monatlich
       *[other] Alle { $interval } Monate
      }
    [yearly] { $interval ->
        [1] Jährlich
       *[other] Alle { $interval } Jahre
      }
   *[other] { $rule }
  }
# Die Wiederholung einer Serie, die schon begonnen hat, und das Ende einer Serie.
repeat-since = { $repeat } seit { $date }
repeat-count = { $repeat }, { $count ->
    [1] einmal
   *[other] { $count }-mal
  }
repeat-until = { $repeat }, bis { $date }

## Datum und Uhrzeit

weekday = { $n ->
    [1] Mo.
    [2] Di.
    [3] Mi.
    [4] Do.
    [5] Fr.
    [6] Sa.
   *[7] So.
  }
month = { $n ->
    [1] Jan.
    [2] Feb.
    [3] März
    [4] Apr.
    [5] Mai
    [6] Juni
    [7] Juli
    [8] Aug.
    [9] Sept.
    [10] Okt.
    [11] Nov.
   *[12] Dez.
  }
date = { $weekday } { $day }. { $month } { $year }
date-time = { $date } { $time }
range-same-day = { $date } { $start }–{ $end }
range = { $start } – { $end }
with-zone = { $when } ({ $zone })
