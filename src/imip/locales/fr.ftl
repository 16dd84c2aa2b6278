# Textes des courriels d'imipd, français. Mêmes identifiants que en.ftl.

## Objets

event-with-time = { $title } @ { $when }
subject-invitation = Invitation : { $event }
subject-invitation-delegated = Invitation (déléguée par { $delegator }) : { $event }
subject-update = Invitation mise à jour : { $event }
subject-add = Nouvelles occurrences : { $event }
subject-cancel = Annulé : { $event }
subject-reply = { $partstat ->
    [accepted] Accepté
    [declined] Refusé
    [tentative] Provisoire
    [delegated] Délégué
    [needs-action] Sans décision
    [completed] Terminé
    [in-process] En cours
    [failed] Échec
   *[other] Réponse
  } : { $event }
subject-counter = Nouvel horaire proposé : { $event }
subject-declinecounter = Proposition refusée : { $event }
subject-refresh = Mise à jour demandée : { $event }
subject-publish = Publié : { $event }

## Première phrase

intro-invitation = { $organizer } vous invite à « { $title } ».
intro-invitation-delegated = { $organizer } vous invite à « { $title } » : { $delegator } vous a délégué sa participation.
intro-update = { $organizer } a modifié « { $title } ».
intro-add = { $organizer } a ajouté des occurrences à « { $title } ».
intro-cancel = { $organizer } a annulé « { $title } ».
intro-update-moved-time = { $organizer } a déplacé l’occurrence de « { $title } » du { $date } de { $from } à { $to }.
intro-update-moved-day = { $organizer } a déplacé l’occurrence de « { $title } » du { $from } au { $to }.
intro-update-occurrence = { $organizer } a modifié l’occurrence de « { $title } » du { $date }.
intro-cancel-occurrence = { $organizer } a annulé l’occurrence de « { $title } » du { $date }.
intro-publish = { $organizer } a publié « { $title } ».
intro-reply = { $partstat ->
    [accepted] { $attendee } a accepté « { $title } ».
    [declined] { $attendee } a refusé « { $title } ».
    [tentative] { $attendee } a accepté « { $title } » à titre provisoire.
    [delegated] { $attendee } a délégué « { $title } » à { $delegate }.
    [needs-action] { $attendee } n'a pas encore décidé pour « { $title } ».
    [completed] { $attendee } a terminé « { $title } ».
    [in-process] { $attendee } travaille sur « { $title } ».
    [failed] { $attendee } n'a pas pu terminer « { $title } ».
   *[other] { $attendee } a répondu à « { $title } ».
  }
intro-counter = { $attendee } propose une modification de « { $title } ».
intro-declinecounter = { $organizer } a refusé votre proposition de modification de « { $title } ».
intro-refresh = { $attendee } demande la version actuelle de « { $title } ».

## Libellés

label-title = Titre
label-when = Quand
label-proposed-when = Horaire proposé
label-where = Où
label-organizer = Organisateur
label-attendees = Participants
label-description = Description
label-changes = Ce qui a changé
label-comment = Commentaire
label-repeats = Répétition
untitled = (sans titre)
no-value = (aucun)
footer = Envoyé automatiquement pour { $sender }. Votre logiciel d'agenda peut lire les données de calendrier de ce courriel.

# A label in front of its value ("Title: Lunch").
label = { $label } :

## Valeurs

partstat = { $partstat ->
    [accepted] Accepté
    [declined] Refusé
    [tentative] Provisoire
    [delegated] Délégué
    [completed] Terminé
    [in-process] En cours
    [failed] Échec
   *[needs-action] En attente de réponse
  }
delegated-to = délégué à { $delegate }
attendees-more = { $count ->
    [1] et 1 autre personne
   *[other] et { $count } autres personnes
  }
field = { $property ->
    [DTSTART] Début
    [DTEND] Fin
    [DUE] Échéance
    [DURATION] Durée
    [SUMMARY] Titre
    [LOCATION] Lieu
    [DESCRIPTION] Description
    [RRULE] Répétition
    [RDATE] Dates supplémentaires
    [EXDATE] Dates exclues
    [STATUS] Statut
    [URL] Lien
   *[other] { $property }
  }
repeat = { $freq ->
    [daily] { $interval ->
        [1] Tous les jours
       *[other] Tous les { $interval } jours
      }
    [weekly] { $interval ->
        [1] Toutes les semaines
       *[other] Toutes les { $interval } semaines
      }
    [monthly] { $interval ->
        [1] Tous les mois
       *[other] Tous les { $interval } mois
      }
    [yearly] { $interval ->
        [1] Tous les ans
       *[other] Tous les { $interval } ans
      }
   *[other] { $rule }
  }
# La répétition d’une série déjà commencée, et la fin d’une série.
repeat-since = { $repeat } depuis le { $date }
repeat-count = { $repeat }, { $count ->
    [1] une fois
   *[other] { $count } fois
  }
repeat-until = { $repeat }, jusqu’au { $date }

## Dates et heures

weekday = { $n ->
    [1] lun.
    [2] mar.
    [3] mer.
    [4] jeu.
    [5] ven.
    [6] sam.
   *[7] dim.
  }
month = { $n ->
    [1] janv.
    [2] févr.
    [3] mars
    [4] avr.
    [5] mai
    [6] juin
    [7] juil.
    [8] août
    [9] sept.
    [10] oct.
    [11] nov.
   *[12] déc.
  }
date = { $weekday } { $day } { $month } { $year }
date-time = { $date } { $time }
range-same-day = { $date } { $start }–{ $end }
range = { $start } – { $end }
with-zone = { $when } ({ $zone })
