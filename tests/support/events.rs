//! The calendar objects the sender-authentication tests protect, one text each with
//! only the invitees changing: what a forged mail must leave byte for byte as it was.
//! Macros, so each test file keeps its copy as a `const` to compare against.

/// Alice's copy of her meeting "Budget" (UID `budget-1`, SEQUENCE 1, 10 April 2030
/// 12:00 UTC), she attending, with the given lines (invitees, a rule) after hers.
#[allow(unused_macros)]
macro_rules! budget_copy {
    ($($line:literal),* $(,)?) => {
        concat!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nBEGIN:VEVENT\r\n",
            "UID:budget-1\r\nDTSTAMP:20300101T090000Z\r\nSEQUENCE:1\r\n",
            "DTSTART:20300410T120000Z\r\nDTEND:20300410T130000Z\r\nSUMMARY:Budget\r\n",
            "ORGANIZER:mailto:alice@example.com\r\n",
            "ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n",
            $($line,)*
            "END:VEVENT\r\nEND:VCALENDAR\r\n"
        )
    };
}
pub(crate) use budget_copy;

/// Bob's copy of Dave's meeting "Review" (UID `review-1`, SEQUENCE 2, 11 April 2030
/// 12:00 UTC), both attending, with the given lines (more invitees) after theirs.
#[allow(unused_macros)]
macro_rules! review_copy {
    ($($line:literal),* $(,)?) => {
        concat!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nBEGIN:VEVENT\r\n",
            "UID:review-1\r\nDTSTAMP:20300101T090000Z\r\nSEQUENCE:2\r\n",
            "DTSTART:20300411T120000Z\r\nDTEND:20300411T130000Z\r\nSUMMARY:Review\r\n",
            "ORGANIZER:mailto:dave@example.net\r\n",
            "ATTENDEE;PARTSTAT=ACCEPTED:mailto:dave@example.net\r\n",
            "ATTENDEE;PARTSTAT=ACCEPTED:mailto:bob@example.com\r\n",
            $($line,)*
            "END:VEVENT\r\nEND:VCALENDAR\r\n"
        )
    };
}
pub(crate) use review_copy;
