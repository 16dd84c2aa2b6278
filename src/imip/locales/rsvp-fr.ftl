# Liens RSVP des invitations et page de réponse (imip::rsvp_page), français.

rsvp-links = Répondre depuis n'importe quel logiciel de messagerie :
rsvp-accept = Accepter
rsvp-maybe = Peut-être
rsvp-decline = Refuser
rsvp-page-title = Votre réponse
rsvp-current = Votre réponse actuelle
rsvp-choose = Choisissez votre réponse
rsvp-comment = Commentaire pour l'organisateur (facultatif)
rsvp-send = Envoyer ma réponse
rsvp-done = Merci : l'organisateur voit maintenant votre réponse « { $answer } ».
rsvp-unchanged = Votre réponse était déjà « { $answer } » : rien n'a changé.
rsvp-error-title = Ce lien ne peut pas être utilisé
rsvp-error-malformed = Ce lien est incomplet. Ouvrez-le à nouveau depuis l'invitation, ou copiez le lien entier.
rsvp-error-altered = Ce lien a été modifié et n'est pas valide. Utilisez le lien de l'invitation tel quel.
rsvp-error-expired = Ce lien a expiré : l'événement est terminé.
rsvp-error-removed = Vous n'êtes plus sur la liste des invités de cet événement : il n'y a rien à répondre.
rsvp-error-cancelled = Cet événement a été annulé : il n'y a rien à répondre.
rsvp-error-gone = Cet événement n'est plus dans le calendrier de l'organisateur.
rsvp-error-busy = Le calendrier est occupé. Veuillez réessayer dans une minute.
rsvp-error-limit = Trop de tentatives. Veuillez patienter une minute.
rsvp-error-form = Veuillez choisir l'une des trois réponses.
rsvp-error-not-found = Il n'y a pas de page ici.
rsvp-error-too-large = La réponse était trop longue. Raccourcissez le commentaire.
