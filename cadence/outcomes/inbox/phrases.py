"""The words that tell an automaton's message from a person's, in the seven languages cadence reads.

Out-of-office replies, automatic receipts and requests to be removed are recognised from
phrases, since no header says "unsubscribe me" and many autoresponders send no header at
all. Each language has its own absence table because the return date is then read with
that language only (searching French text as every language read "Je" as jeudi). The
tables are ordered by nothing: any hit counts; they are patterns, not keywords, so that
"absent" in "absent-minded" or "remove" in "removed the blocker" does not.
"""

from __future__ import annotations

import re

LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "pt", "nl", "it")


def _table(patterns: dict[str, tuple[str, ...]]) -> dict[str, re.Pattern[str]]:
    return {lang: re.compile(r"(?<!\w)(?:" + "|".join(p) + r")(?!\w)", re.IGNORECASE) for lang, p in patterns.items()}


# Someone is away: the sentence that says so is where the return date is.
ABSENCE: dict[str, re.Pattern[str]] = _table(
    {
        "en": (
            r"out of (?:the )?office",
            r"\booo\b",
            r"on (?:annual |parental |maternity |paternity |sick |medical )?leave",
            r"on (?:vacation|holidays?|sabbatical|a business trip|business travel)",
            r"(?:currently |i am |i'm )away",
            r"away from (?:the office|my desk|my email|the desk)",
            r"(?:limited|no|intermittent) access to (?:my )?e-?mail",
            r"(?:will|shall) be back",
            r"(?:i'll|i will|i shall) return",
            r"returning (?:on|to the office)",
            r"back in (?:the )?office",
            r"(?<!get )back (?:on|at work on)",
            r"out (?:of office )?until",
            r"(?:i am|i'm) (?:out|off)",
            r"absent",
        ),
        "de": (
            r"abwesend",
            r"abwesenheit\w*",
            r"nicht (?:im|ins) büro",
            r"außer haus",
            r"ausser haus",
            r"(?:im|in) urlaub",
            r"urlaubsbedingt",
            r"nicht erreichbar",
            r"nicht im hause?",
            r"dienstreise",
            r"wieder (?:im büro|erreichbar|da|zurück|für sie da|im hause?)",
            r"zurück (?:am|ab)",
            r"elternzeit",
        ),
        "fr": (
            r"absente?",
            r"absence",
            r"en congés?",
            r"en vacances",
            r"hors du bureau",
            r"pas au bureau",
            r"de retour",
            r"serai (?:de retour|absente?|en congés?)",
            r"en déplacement",
            r"congé maternité",
        ),
        "es": (
            r"fuera de (?:la )?oficina",
            r"ausente",
            r"ausencia",
            r"de vacaciones",
            r"de viaje",
            r"estaré de (?:vuelta|regreso)",
            r"regresaré",
            r"volveré",
            r"de baja (?:médica|por maternidad)",
        ),
        "pt": (
            r"fora do escritório",
            r"ausente",
            r"ausência",
            r"de férias",
            r"estarei de volta",
            r"(?:retornarei|regressarei|voltarei)",
            r"em viagem",
            r"de licença",
        ),
        "nl": (
            r"afwezig",
            r"niet (?:op kantoor|aanwezig)",
            r"(?:met|op) vakantie",
            r"weer aanwezig",
            r"(?:ben|weer) terug",
            r"terug op",
            r"niet bereikbaar",
            r"met verlof",
        ),
        "it": (
            r"fuori (?:ufficio|sede)",
            r"assente",
            r"assenza",
            r"in ferie",
            r"in vacanza",
            r"di ritorno",
            r"rientrerò",
            r"sarò di nuovo",
            r"rientro",
            r"in trasferta",
        ),
    }
)

# A subject an autoresponder writes (at its start, before any "Re:").
AUTO_SUBJECT = re.compile(
    r"^\s*(?:\[?(?:automatic reply|auto[- ]?reply|auto[- ]?response|autoresponse|out of (?:the )?office|ooo"
    r"|abwesenheitsnotiz|abwesend|automatische antwort|réponse automatique|absente?|absence"
    r"|respuesta automática|fuera de la oficina|ausente|resposta automática|fora do escritório"
    r"|automatisch antwoord|afwezig|risposta automatica|fuori (?:ufficio|sede)|assente)\]?)\s*(?::|-|\s|$)",
    re.IGNORECASE,
)

# Absence words a subject may carry ("Out of Office: ...", "Abwesenheitsnotiz").
ABSENCE_SUBJECT = re.compile(
    r"(?:out of (?:the )?office|\booo\b|abwesen|absen[ct]|fuera de la oficina|ausen|fora do escritório|afwezig"
    r"|fuori (?:ufficio|sede)|assente|vacation|urlaub|vacances|vacaciones|férias|vakantie|ferie)",
    re.IGNORECASE,
)

# Words only software writes: a ticket receipt, a no-reply notice, a "we got your message".
AUTO_BODY = re.compile(
    r"(?<!\w)(?:this is an? (?:automated|automatic|auto-generated) (?:message|response|reply|e-?mail|notification)"
    r"|this (?:message|e-?mail) (?:was|has been) (?:sent |generated )?automatically"
    r"|(?:please )?do not reply to this (?:message|e-?mail)|this mailbox is not monitored"
    r"|(?:your|a) (?:support )?(?:request|ticket|case) (?:\(?#?\s*\d+\)? )?has been (?:received|created|logged)"
    r"|we have received your (?:message|e-?mail|request|inquiry|enquiry)"
    r"|(?:ticket|case|request) (?:number|id|#)\s*:?\s*#?\d+"
    r"|thank you for (?:contacting|your (?:e-?mail|message|inquiry|enquiry)),? (?:we|our team|a member)"
    r"|diese nachricht wurde automatisch|dies ist eine automatische|automatisch generierte"
    r"|ceci est un message automatique|ce message (?:a été )?(?:est )?généré automatiquement"
    r"|este es un mensaje automático|este mensaje (?:ha sido|fue) generado automáticamente"
    r"|esta é uma (?:mensagem|resposta) automática|dit is een automatisch"
    r"|questo è un messaggio automatico|messaggio generato automaticamente)(?!\w)",
    re.IGNORECASE,
)

# A person asking to be removed.
UNSUBSCRIBE: dict[str, re.Pattern[str]] = _table(
    {
        "en": (
            r"unsubscribe(?: me)?",
            r"remove (?:me|us|my (?:e-?mail|address|name))",
            r"take (?:me|us|my (?:e-?mail|address|name)) off (?:of )?(?:your|the|this|all) (?:\w+ )?"
            r"(?:list|lists|distribution|database|sequence|emails)",
            r"opt (?:me|us) out",
            r"opt out of (?:your|these|this|all) (?:\w+ )?(?:e-?mails|emails|messages|list|mailings?)",
            r"stop (?:e-?mailing|emailing|sending|contacting|messaging|writing to) (?:me|us)",
            r"stop (?:sending|these) (?:me )?(?:e-?mails|emails|messages)",
            r"(?:do not|don't|dont|never) (?:e-?mail|contact|message|write to) (?:me|us) (?:again|anymore|any more)",
            r"no (?:more|further) (?:e-?mails|emails|messages)",
            r"off your (?:mailing )?list",
        ),
        "de": (
            r"(?:mich|uns)\s+(?:\w+\s+){0,3}ab(?:melden|bestellen)",
            r"bitte ab(?:melden|bestellen)",
            r"abbestellen",
            r"(?:tragen sie|trag) (?:mich|uns) (?:bitte )?aus",
            r"(?:bitte )?austragen",
            r"entfernen sie (?:mich|uns|meine (?:e-?mail-)?adresse)",
            r"(?:von|aus) (?:ihrer|ihrem|der|dem) (?:liste|verteiler|e-?mail-verteiler)"
            r" (?:entfernen|nehmen|streichen|löschen)",
            r"keine (?:weiteren (?:e-?mails|mails|nachrichten)|(?:e-?mails|mails|nachrichten) mehr)",
            r"nicht mehr (?:kontaktieren|anschreiben|schreiben|an(?:zu)?schreiben)",
        ),
        "fr": (
            r"désabonner",
            r"désinscri(?:re|vez|ption|vez-moi)",
            r"désinscrivez-moi",
            r"retirez-(?:moi|nous)",
            r"supprimez-(?:moi|nous)",
            r"retirer (?:mon adresse|de votre liste)",
            r"ne plus (?:recevoir|me contacter|m'écrire|être contacté)",
            r"arrêtez de m'(?:envoyer|écrire|contacter)",
            r"ne me (?:contactez|recontactez|écrivez) plus",
        ),
        "es": (
            r"darme de baja",
            r"dar de baja",
            r"denme de baja",
            r"den de baja",
            r"(?:elimínenme|elimíname|eliminarme)",
            r"no me (?:envíe|envíen|escriba|escriban|contacte|contacten) más",
            r"dejen de (?:enviarme|escribirme|contactarme)",
            r"(?:quitarme|sacarme|quítenme|sáquenme) de (?:su|la|vuestra) lista",
            r"borrarme de",
        ),
        "pt": (
            r"descadastrar",
            r"descadastre",
            r"cancelar (?:a )?(?:minha )?inscrição",
            r"remova-me",
            r"removam-me",
            r"me remova",
            r"me removam",
            r"remover (?:o )?meu (?:e-?mail|endereço)",
            r"parem de (?:me )?(?:enviar|mandar)",
            r"não (?:me )?(?:envie|enviem|mande|mandem|contate|contatem) mais",
            r"sair da (?:sua )?lista",
        ),
        "nl": (
            r"afmelden",
            r"uitschrijven",
            r"schrijf (?:me|mij) uit",
            r"verwijder (?:me|mij|ons|mijn (?:e-?mail)?adres)",
            r"haal (?:me|mij) (?:van|uit)",
            r"stop met (?:mailen|e-?mailen|sturen)",
            r"geen (?:e-?mails|mails|berichten) meer",
        ),
        "it": (
            r"disiscriv\w*",
            r"cancellatemi",
            r"cancellami",
            r"rimuovetemi",
            r"rimuovimi",
            r"rimuover(?:mi|ci)",
            r"toglietemi",
            r"rimuovere (?:il mio|la mia) (?:indirizzo|e-?mail)",
            r"non (?:voglio più )?ricevere (?:più )?(?:e-?mail|email|messaggi)",
            r"smettete(?: di)? (?:inviarmi|scrivermi|contattarmi)",
            r"non (?:mi )?(?:scrivete|contattate) più",
        ),
    }
)

# A non-standard delivery failure notice's subject.
BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:undeliverable|undelivered mail|mail delivery (?:failed|failure|system)|delivery (?:status notification"
    r" \((?:failure|delay)\)|failure|notification|has failed|incomplete)|returned mail|failure notice|"
    r"non[- ]?delivery|delivery failed|message (?:not delivered|delivery failure)|nicht zustellbar|unzustellbar"
    r"|non remis|échec de (?:la )?remise|no se puede entregar|não (?:foi possível )?entreg|onbestelbaar"
    r"|non recapitabile"
    r"|warning: could not send message|delayed mail)",
    re.IGNORECASE,
)

# A mailbox only software writes from.
MAILER_LOCAL_PARTS = frozenset({"mailer-daemon", "mailerdaemon", "mail-daemon", "postmaster", "mailer"})
MAILER_NAMES = re.compile(r"mail delivery (?:system|subsystem)|mailer[- ]daemon|postmaster", re.IGNORECASE)


def absence(text: str) -> list[tuple[str, re.Match[str]]]:
    """Every absence phrase in `text`, with its language, in the order the text says them."""
    hits = [(lang, m) for lang, pattern in ABSENCE.items() for m in pattern.finditer(text)]
    return sorted(hits, key=lambda hit: hit[1].start())


def unsubscribe(text: str) -> re.Match[str] | None:
    """The first words of `text` asking to be removed, in any language."""
    hits = [m for pattern in UNSUBSCRIBE.values() if (m := pattern.search(text))]
    return min(hits, key=lambda m: m.start()) if hits else None
