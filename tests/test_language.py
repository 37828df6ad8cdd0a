"""Language detection restricted to NeMo's eleven languages (lingua), as used for source "auto"."""

from __future__ import annotations

from collections import Counter

from app.documents.language import LANGUAGES, LanguageCheck, check_language, detect_language

SENTENCES = {
    "en": ["Good morning!", "Where is the station?", "Thank you very much.", "I would like a cup of tea, please.",
           "The meeting has been moved to Thursday afternoon.", "She has lived in this small town all her life.",
           "Please send me the report before the end of the week.", "It is raining again today.",
           "Our team fixed the bug in the payment service.", "How much does this book cost?",
           "Children were playing in the park until it got dark.", "I don't know."],
    "fr": ["Bonjour à tous !", "Où est la gare ?", "Merci beaucoup.", "Je voudrais un café, s'il vous plaît.",
           "La réunion a été déplacée à jeudi après-midi.", "Elle a vécu toute sa vie dans ce petit village.",
           "Envoyez-moi le rapport avant la fin de la semaine.", "Il pleut encore aujourd'hui.",
           "Notre équipe a corrigé le bogue du service de paiement.", "Combien coûte ce livre ?",
           "Les enfants jouaient dans le parc jusqu'à la tombée de la nuit.", "Je ne sais pas."],
    "de": ["Guten Morgen!", "Wo ist der Bahnhof?", "Vielen Dank.", "Ich hätte gern eine Tasse Tee, bitte.",
           "Die Besprechung wurde auf Donnerstagnachmittag verschoben.",
           "Sie hat ihr ganzes Leben in dieser kleinen Stadt gewohnt.",
           "Bitte schicken Sie mir den Bericht vor Ende der Woche.", "Heute regnet es schon wieder.",
           "Unser Team hat den Fehler im Zahlungsdienst behoben.", "Wie viel kostet dieses Buch?",
           "Die Kinder spielten im Park, bis es dunkel wurde.", "Ich weiß es nicht."],
    "es": ["¡Buenos días!", "¿Dónde está la estación?", "Muchas gracias.", "Quisiera una taza de té, por favor.",
           "La reunión se ha trasladado al jueves por la tarde.", "Ella ha vivido toda su vida en este pueblo.",
           "Por favor, envíeme el informe antes del final de la semana.", "Hoy está lloviendo otra vez.",
           "Nuestro equipo arregló el error en el servicio de pagos.", "¿Cuánto cuesta este libro?",
           "Los niños jugaban en el parque hasta que oscureció.", "No lo sé."],
    "it": ["Buongiorno a tutti!", "Dov'è la stazione?", "Grazie mille.", "Vorrei una tazza di tè, per favore.",
           "La riunione è stata spostata a giovedì pomeriggio.", "Ha vissuto tutta la vita in questo paesino.",
           "Per favore, mandami la relazione entro la fine della settimana.", "Oggi piove di nuovo.",
           "La nostra squadra ha corretto l'errore nel servizio dei pagamenti.", "Quanto costa questo libro?",
           "I bambini giocavano nel parco finché non è diventato buio.", "Non lo so."],
    "pt": ["Bom dia a todos!", "Onde fica a estação?", "Muito obrigado.", "Eu queria uma xícara de chá, por favor.",
           "A reunião foi adiada para quinta-feira à tarde.", "Ela viveu a vida inteira nesta pequena cidade.",
           "Por favor, envie-me o relatório antes do fim da semana.", "Hoje está chovendo de novo.",
           "A nossa equipe corrigiu o erro no serviço de pagamentos.", "Quanto custa este livro?",
           "As crianças brincavam no parque até escurecer.", "Não sei."],
    "zh": ["早上好！", "火车站在哪里？", "非常感谢。", "请给我一杯茶。", "会议改到星期四下午了。",
           "她一辈子都住在这个小镇上。", "请在周末之前把报告发给我。", "今天又下雨了。",
           "我们的团队修复了支付服务中的错误。", "这本书多少钱？", "孩子们在公园里玩到天黑。", "我不知道。"],
    "ja": ["おはようございます。", "駅はどこですか？", "どうもありがとう。", "紅茶を一杯お願いします。",
           "会議は木曜日の午後に変更されました。", "彼女はずっとこの小さな町に住んでいます。",
           "週末までに報告書を送ってください。", "今日もまた雨が降っています。",
           "私たちのチームは支払いサービスのバグを直しました。", "この本はいくらですか？",
           "子どもたちは暗くなるまで公園で遊んでいた。", "わかりません。"],
    "ko": ["안녕하세요!", "역이 어디에 있어요?", "정말 감사합니다.", "차 한 잔 주세요.",
           "회의가 목요일 오후로 옮겨졌습니다.", "그녀는 평생 이 작은 마을에서 살았어요.",
           "주말 전에 보고서를 보내 주세요.", "오늘 또 비가 와요.",
           "우리 팀이 결제 서비스의 버그를 고쳤습니다.", "이 책은 얼마예요?",
           "아이들은 어두워질 때까지 공원에서 놀았다.", "모르겠어요."],
    "ar": ["صباح الخير!", "أين المحطة؟", "شكرا جزيلا.", "أريد كوبا من الشاي من فضلك.",
           "تم تأجيل الاجتماع إلى بعد ظهر يوم الخميس.", "عاشت طوال حياتها في هذه البلدة الصغيرة.",
           "من فضلك أرسل لي التقرير قبل نهاية الأسبوع.", "إنها تمطر مرة أخرى اليوم.",
           "أصلح فريقنا الخطأ في خدمة الدفع.", "كم ثمن هذا الكتاب؟",
           "كان الأطفال يلعبون في الحديقة حتى حل الظلام.", "لا أعرف."],
    "hi": ["सुप्रभात!", "स्टेशन कहाँ है?", "बहुत धन्यवाद।", "मुझे एक कप चाय चाहिए।",
           "बैठक गुरुवार दोपहर तक टाल दी गई है।", "वह जीवन भर इसी छोटे शहर में रही है।",
           "कृपया सप्ताह के अंत से पहले मुझे रिपोर्ट भेज दीजिए।", "आज फिर से बारिश हो रही है।",
           "हमारी टीम ने भुगतान सेवा की गड़बड़ी ठीक कर दी।", "यह किताब कितने की है?",
           "बच्चे अंधेरा होने तक पार्क में खेलते रहे।", "मुझे नहीं पता।"],
}


def test_at_least_ten_sentences_per_language_short_ones_included():
    assert set(SENTENCES) == set(LANGUAGES)
    for language, sentences in SENTENCES.items():
        assert len(sentences) >= 10, language
        assert min(len(s) for s in sentences) <= 15, f"{language}: some sentences must be short"


def test_detection_is_right_for_at_least_95_percent(capsys):
    wrong = Counter()
    mistakes = []
    for language, sentences in SENTENCES.items():
        for sentence in sentences:
            found = detect_language(sentence)
            if found != language:
                wrong[language] += 1
                mistakes.append(f"{sentence!r}: {language} taken for {found}")
    total = sum(len(s) for s in SENTENCES.values())
    with capsys.disabled():
        print("\nlanguage detection, correct per language:",
              ", ".join(f"{lang} {len(s) - wrong[lang]}/{len(s)}" for lang, s in SENTENCES.items()),
              f"· overall {total - sum(wrong.values())}/{total}", *mistakes, sep="\n  ")
    assert sum(wrong.values()) <= 0.05 * total, mistakes
    assert all(count <= 2 for count in wrong.values()), mistakes


def test_mixed_language_text_gets_its_main_language():
    """One language per text: the one most of it is written in; a half-and-half text gets one of both."""
    mostly_french = ("Le rapport annuel est prêt et sera envoyé demain matin à tous les membres du conseil. "
                     "Please find it attached. Nous vous remercions de votre patience et de votre confiance.")
    assert detect_language(mostly_french) == "fr"
    mostly_japanese = "明日の会議は午後三時から始まります。資料は事前に読んでおいてください。Thank you!"
    assert detect_language(mostly_japanese) == "ja"
    half = "The weather is lovely today. Das Wetter ist heute wunderbar."
    assert detect_language(half) in ("en", "de")
    code_switch = "यह meeting कल सुबह दस बजे होगी, please सबको बता देना।"
    assert detect_language(code_switch) == "hi", "Hindi written with English words is still Hindi"


# -- checking what a model wrote ---------------------------------------------------------------------


def test_a_text_is_checked_against_the_language_asked_for():
    """What the model wrote passes when it is in the language asked for and is caught when it clearly
    is not; a text too short to tell passes unchecked."""
    codes = list(SENTENCES)
    passed = caught = checked = 0
    for language, sentences in SENTENCES.items():
        other = codes[(codes.index(language) + 1) % len(codes)]
        for sentence in sentences:
            if check_language(sentence, language).found == "":
                continue  # too short to tell
            checked += 1
            passed += check_language(sentence, language).matches
            caught += check_language(sentence, other) == LanguageCheck(other, language)
    assert checked >= 80 and passed >= 0.95 * checked and caught >= 0.9 * checked, (checked, passed, caught)
    assert check_language("Oui, merci.", "de") == LanguageCheck("de", ""), "too short to tell"
    reply = "The lighthouse keeper waited by the grey sea for the morning light."
    assert check_language(reply, "fr") == LanguageCheck("fr", "en") and not check_language(reply, "fr").matches
    assert check_language("Vädret är fint i dag och vi ska gå till stranden.", "sv").matches, "a language beyond NeMo's"
    assert check_language(reply, "sv").found == "en"
    mixed = "Lancez `make check && git push` avant de publier, puis lisez https://example.com/guide attentivement."
    assert check_language(mixed, "fr").matches, "code and links do not make a French text English"
