# RSVP-Links in Einladungen und die Antwortseite (imip::rsvp_page), Deutsch.

rsvp-links = Antworten aus jedem E-Mail-Programm:
rsvp-accept = Zusagen
rsvp-maybe = Vielleicht
rsvp-decline = Absagen
rsvp-page-title = Ihre Antwort
rsvp-current = Ihre bisherige Antwort
rsvp-choose = Wählen Sie Ihre Antwort
rsvp-comment = Kommentar für den Organisator (freiwillig)
rsvp-send = Antwort senden
rsvp-done = Danke: Der Organisator sieht jetzt Ihre Antwort „{ $answer }“.
rsvp-unchanged = Ihre Antwort war bereits „{ $answer }“: Es hat sich nichts geändert.
rsvp-error-title = Dieser Link kann nicht verwendet werden
rsvp-error-malformed = Dieser Link ist unvollständig. Öffnen Sie ihn erneut aus der Einladung oder kopieren Sie den ganzen Link.
rsvp-error-altered = Dieser Link wurde verändert und ist ungültig. Verwenden Sie den Link aus der Einladung unverändert.
rsvp-error-expired = Dieser Link ist abgelaufen: Der Termin ist vorbei.
rsvp-error-removed = Sie stehen nicht mehr auf der Gästeliste dieses Termins; es gibt nichts zu beantworten.
rsvp-error-cancelled = Dieser Termin wurde abgesagt; es gibt nichts zu beantworten.
rsvp-error-gone = Dieser Termin ist nicht mehr im Kalender des Organisators.
rsvp-error-busy = Der Kalender ist gerade beschäftigt. Bitte versuchen Sie es in einer Minute erneut.
rsvp-error-limit = Zu viele Versuche. Bitte warten Sie eine Minute.
rsvp-error-form = Bitte wählen Sie eine der drei Antworten.
rsvp-error-not-found = Hier gibt es keine Seite.
rsvp-error-too-large = Die Antwort war zu lang. Halten Sie den Kommentar kurz.
