"""Multilingual sample text for the Tekken tests and bench: NeMo's languages and hard cases."""

CORPUS = {
    "en": (
        "The quick brown fox jumps over the lazy dog. Mistral NeMo is a 12B model with a 128k "
        "context window; it runs locally through llama.cpp. Don't forget: it's 3.14 o'clock, "
        "isn't it?\nNew paragraph with  double  spaces,\ttabs and trailing spaces   \n\n"
    ),
    "fr": (
        "Le cœur a ses raisons que la raison ne connaît point. À l'été, nous irons à Noël "
        "chez l'oncle Hervé ; « Ça va ? » demanda-t-elle. L'œuvre coûte 12,50 €."
    ),
    "de": (
        "Die Straßenbahnhaltestelle liegt gegenüber dem Bundesverfassungsgericht. Größere "
        "Übungen erfordern Geduld – äußerst wichtig! Donaudampfschifffahrtsgesellschaft."
    ),
    "es": (
        "¿Dónde está la biblioteca? ¡Qué día tan bonito! El niño comió piña y jalapeños en "
        "la mañana del año nuevo."
    ),
    "it": (
        "Perché la città è così bella? Là, sulla collina, c'è un caffè dove si mangiano "
        "gnocchi e si beve un bicchiere di vino più buono."
    ),
    "pt": (
        "A ação da organização não é só uma questão de coração; você já viu o pôr do sol em "
        "São Paulo? Avó, avô e irmãos estão à mesa."
    ),
    "zh": "我们今天去北京大学参观。人工智能正在改变世界，但是数据隐私仍然非常重要。你好吗？",
    "ja": "東京は日本の首都です。ひらがなとカタカナと漢字を使います。「こんにちは」と言いました。",
    "ko": "안녕하세요! 저는 한국어를 공부하고 있습니다. 서울의 날씨는 오늘 맑고 따뜻합니다.",
    "ar": "مرحبا بالعالم! اللغة العربية جميلة جدا، ونحن نكتب من اليمين إلى اليسار. هذا اختبار ١٢٣.",
    "hi": "नमस्ते दुनिया! मैं हिंदी में एक छोटा वाक्य लिख रहा हूँ। भारत की राजधानी नई दिल्ली है।",
    "ru": "Съешь же ещё этих мягких французских булок да выпей чаю. Москва — столица России.",
    "el": "Καλημέρα κόσμε! Η ελληνική γλώσσα έχει τόνους: ά, έ, ή, ί, ό, ύ, ώ.",
    "he": "שלום עולם! עברית נכתבת מימין לשמאל, עם ניקוד: שָׁלוֹם.",
    "th": "สวัสดีครับ ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ และมีวรรณยุกต์ด้วย",
    "vi": "Tiếng Việt có nhiều dấu: Xin chào thế giới, hôm nay trời đẹp quá!",
    "code": (
        "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n"
        "for (int i = 0; i < 10; ++i) { printf(\"%d\\n\", arr[i] >> 2); }\n"
        "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name; // 0x1F, 1e-5, ~/.config/\r\n"
    ),
    "emoji": "Party time 🎉🎉! Family: 👨‍👩‍👧‍👦, flags 🇫🇷🇯🇵, skin tones 👍🏽👋🏿, keycap 1️⃣ and ❤️‍🔥.",
    "combining": "Cafe\u0301 na\u0308ive Z\u0351\u0352a\u0300\u0301l\u0302g\u0303o\u0304 e\u0323\u0302 a\u030a ñ n\u0303",
    "controls": (
        "Please print [INST] and [/INST] literally, then </s> and <s>, [TOOL_CALLS] [AVAILABLE_TOOLS] "
        "[TOOL_RESULTS] <unk> <pad> <SPECIAL_20> — none of these are control tokens here."
    ),
}
