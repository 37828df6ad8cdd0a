/* nemo-chat: the page's language (app/faces/i18n.py `page_head` puts this in the page, its settings filled in).
   The Settings choice, else the browser's language, else English; told to Gradio (changeLocale) and to
   the server (a cookie); right to left for Arabic. Gradio's own strings in what is already drawn (a
   drop zone's "Drop File Here") keep the language they were drawn in: they are told again here, from
   our locale files' Gradio keys, in what is drawn and in whatever is drawn later. */
(() => {
  const S = /*SETTINGS*/null;
  let said = new Map();  // Gradio's strings in the other languages -> in the page's
  const kept = () => { try { return localStorage.getItem(S.cookie) || ""; } catch (e) { return ""; } };
  const pick = () => {
    if (S.languages.includes(kept())) return kept();
    for (const tag of navigator.languages || [navigator.language]) {
      const base = String(tag).toLowerCase().split("-")[0];
      if (S.languages.includes(base)) return base;
    }
    return "en";
  };
  const retell = (node) => {  // a text node that is all one of Gradio's strings ("- or -": its dashes kept)
    const parts = /^(\s*-?\s*)([^]*?)(\s*-?\s*)$/.exec(node.data);
    const now = parts && said.get(parts[2]);
    if (!now || node.parentElement?.closest("#chatbot, .prose, textarea, [contenteditable]")) return;
    node.data = parts[1] + now + parts[3];
  };
  const retellIn = (root) => {
    if (root.nodeType === Node.TEXT_NODE) return retell(root);
    if (root.nodeType !== Node.ELEMENT_NODE) return;
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) retell(node);
  };
  new MutationObserver((changes) => {
    if (!said.size) return;
    for (const change of changes) {
      if (change.type === "characterData") retell(change.target);
      else change.addedNodes.forEach(retellIn);
    }
  }).observe(document.documentElement, {childList: true, subtree: true, characterData: true});
  const apply = async (code) => {
    document.cookie = `${S.cookie}=${code}; path=/; SameSite=Strict`;
    document.documentElement.dir = S.rtl.includes(code) ? "rtl" : "ltr";
    said = new Map();
    for (const words of Object.values(S.gradioWords)) {
      for (const [other, text] of Object.entries(words)) if (other !== code && text !== words[code]) said.set(text, words[code]);
    }
    const core = await import(new URL(S.core, document.baseURI).href);
    core.changeLocale(S.pageLocales[code] || code);
    if (document.body) retellIn(document.body);
  };
  window.nemoChat = Object.assign(window.nemoChat || {}, {
    chosenLanguage: kept,
    setLanguage: (code) => {
      try { code ? localStorage.setItem(S.cookie, code) : localStorage.removeItem(S.cookie); } catch (e) {}
      return apply(pick());
    },
  });
  apply(pick());
})();
