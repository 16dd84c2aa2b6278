# imipd mail texts, English. Every message id here must exist in de.ftl and fr.ftl.
# $event is "title @ when" (see event-with-time) or the bare title.

## Subject lines

event-with-time = { $title } @ { $when }
subject-invitation = Invitation: { $event }
subject-invitation-delegated = Invitation (delegated by { $delegator }): { $event }
subject-update = Updated invitation: { $event }
subject-add = New occurrences: { $event }
subject-cancel = Cancelled: { $event }
subject-reply = { $partstat ->
    [accepted] Accepted
    [declined] Declined
    [tentative] Tentative
    [delegated] Delegated
    [needs-action] Undecided
    [completed] Completed
    [in-process] In progress
    [failed] Failed
   *[other] Reply
  }: { $event }
subject-counter = New time proposed: { $event }
subject-declinecounter = Proposal declined: { $event }
subject-refresh = Update requested: { $event }
subject-publish = Published: { $event }

## First sentence of the body

intro-invitation = { $organizer } has invited you to “{ $title }”.
intro-invitation-delegated = { $organizer } has invited you to “{ $title }”: { $delegator } delegated their attendance to you.
intro-update = { $organizer } has updated “{ $title }”.
intro-add = { $organizer } has added occurrences to “{ $title }”.
intro-cancel = { $organizer } has cancelled “{ $title }”.
intro-update-moved-time = { $organizer } has moved the occurrence of “{ $title }” on { $date } from { $from } to { $to }.
intro-update-moved-day = { $organizer } has moved the occurrence of “{ $title }” from { $from } to { $to }.
intro-update-occurrence = { $organizer } has updated the occurrence of “{ $title }” on { $date }.
intro-cancel-occurrence = { $organizer } has cancelled the occurrence of “{ $title }” on { $date }.
intro-publish = { $organizer } has published “{ $title }”.
intro-reply = { $partstat ->
    [accepted] { $attendee } has accepted “{ $title }”.
    [declined] { $attendee } has declined “{ $title }”.
    [tentative] { $attendee } has tentatively accepted “{ $title }”.
    [delegated] { $attendee } has delegated “{ $title }” to { $delegate }.
    [needs-action] { $attendee } has not decided yet about “{ $title }”.
    [completed] { $attendee } has completed “{ $title }”.
    [in-process] { $attendee } is working on “{ $title }”.
    [failed] { $attendee } could not complete “{ $title }”.
   *[other] { $attendee } has replied to “{ $title }”.
  }
intro-counter = { $attendee } proposes a change to “{ $title }”.
intro-declinecounter = { $organizer } has declined your proposed change to “{ $title }”.
intro-refresh = { $attendee } asks for the current version of “{ $title }”.

## Labels

label-title = Title
label-when = When
label-proposed-when = Proposed time
label-where = Where
label-organizer = Organizer
label-attendees = Attendees
label-description = Description
label-changes = What changed
label-comment = Comment
label-repeats = Repeats
untitled = (no title)
no-value = (none)
footer = Sent automatically for { $sender }. Your calendar program can read the calendar data in this email.

# A label in front of its value ("Title: Lunch").
label = { $label }:

## Values

partstat = { $partstat ->
    [accepted] Accepted
    [declined] Declined
    [tentative] Tentative
    [delegated] Delegated
    [completed] Completed
    [in-process] In progress
    [failed] Failed
   *[needs-action] Awaiting reply
  }
delegated-to = delegated to { $delegate }
attendees-more = { $count ->
    [1] and 1 other
   *[other] and { $count } others
  }
field = { $property ->
    [DTSTART] Start
    [DTEND] End
    [DUE] Due
    [DURATION] Duration
    [SUMMARY] Title
    [LOCATION] Location
    [DESCRIPTION] Description
    [RRULE] Repeats
    [RDATE] Extra dates
    [EXDATE] Excluded dates
    [STATUS] Status
    [URL] Link
   *[other] { $property }
  }
repeat = { $freq ->
    [daily] { $interval ->
        [1] Every day
       *[other] Every { $interval } days
      }
    [weekly] { $interval ->
        [1] Every week
       *[other] Every { $interval } weeks
      }
    [monthly] { $interval ->
        [1] Every month
       *[other] Every { $interval } months
      }
    [yearly] { $interval ->
        [1] Every year
       *[other] Every { $interval } years
      }
   *[other] { $rule }
  }
# The Repeats line of a series shown by its next occurrence, and the end of a series.
repeat-since = { $repeat } since { $date }
repeat-count = { $repeat }, { $count ->
    [1] once
   *[other] { $count } times
  }
repeat-until = { $repeat }, until { $date }

## Dates and times

weekday = { $n ->
    [1] Mon
    [2] Tue
    [3] Wed
    [4] Thu
    [5] Fri
    [6] Sat
   *[7] Sun
  }
month = { $n ->
    [1] Jan
    [2] Feb
    [3] Mar
    [4] Apr
    [5] May
    [6] Jun
    [7] Jul
    [8] Aug
    [9] Sep
    [10] Oct
    [11] Nov
   *[12] Dec
  }
date = { $weekday } { $day } { $month } { $year }
date-time = { $date } { $time }
range-same-day = { $date } { $start }–{ $end }
range = { $start } – { $end }
with-zone = { $when } ({ $zone })
