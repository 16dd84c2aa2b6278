# RSVP links in invitations and the answer page (imip::rsvp_page), English.
# Every message id here must exist in rsvp-de.ftl and rsvp-fr.ftl.

rsvp-links = Answer from any mail program:
rsvp-accept = Accept
rsvp-maybe = Maybe
rsvp-decline = Decline
rsvp-page-title = Your answer
rsvp-current = Your current answer
rsvp-choose = Choose your answer
rsvp-comment = Comment for the organizer (optional)
rsvp-send = Send my answer
rsvp-done = Thank you: the organizer now sees your answer “{ $answer }”.
rsvp-unchanged = Your answer was already “{ $answer }”: nothing changed.
rsvp-error-title = This link cannot be used
rsvp-error-malformed = This link is incomplete. Open it again from the invitation email, or copy the whole link.
rsvp-error-altered = This link has been altered and is not valid. Use the link from the invitation email as it is.
rsvp-error-expired = This link has expired: the event is over.
rsvp-error-removed = You are no longer on the guest list of this event, so there is nothing to answer.
rsvp-error-cancelled = This event has been cancelled, so there is nothing to answer.
rsvp-error-gone = This event is no longer in the organizer's calendar.
rsvp-error-busy = The calendar is busy right now. Please try again in a minute.
rsvp-error-limit = Too many attempts. Please wait a minute and try again.
rsvp-error-form = Please choose one of the three answers.
rsvp-error-not-found = There is no page here.
rsvp-error-too-large = The answer was too long. Keep the comment short.
