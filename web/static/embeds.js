/* Click-to-load video players. The server renders a line holding only a YouTube or Vimeo link as a
   placeholder (`[data-embed]` with a button and a link; liveblog/render.py): nothing is requested from
   the provider until the reader presses the button. Then the placeholder is replaced by the provider's
   privacy-enhanced player in a sandboxed iframe (the pages' CSP allows frames from exactly these two
   origins). Works for placeholders added later too (live updates, the editor's preview): one listener
   on the document. No inline script, no third-party script. */
"use strict";

(() => {
  const PLAYERS = {
    youtube: {
      valid: /^[A-Za-z0-9_-]{11}$/,
      src: (id) => `https://www.youtube-nocookie.com/embed/${id}?autoplay=1`,
    },
    vimeo: {
      valid: /^\d+(:[0-9a-f]+)?$/,
      src: (id) => {
        const [video, hash] = id.split(":");
        return `https://player.vimeo.com/video/${video}?dnt=1&autoplay=1${hash ? `&h=${hash}` : ""}`;
      },
    },
  };

  function load(placeholder) {
    const player = PLAYERS[placeholder.dataset.embed];
    const id = placeholder.dataset.embedId || "";
    if (!player || !player.valid.test(id)) return;
    const frame = document.createElement("iframe");
    frame.src = player.src(id);
    frame.title = placeholder.querySelector("button")?.textContent || placeholder.dataset.embed;
    frame.allow = "autoplay; encrypted-media; picture-in-picture; fullscreen";
    frame.allowFullscreen = true;
    frame.referrerPolicy = "strict-origin-when-cross-origin";
    frame.setAttribute("sandbox", "allow-scripts allow-same-origin allow-presentation allow-popups");
    const holder = document.createElement("div");
    holder.className = "lb-player lb-player-loaded";
    holder.dataset.embedLoaded = placeholder.dataset.embed;
    holder.append(frame);
    placeholder.replaceWith(holder);
    frame.focus();
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest?.("[data-embed] button");
    if (!button) return;
    event.preventDefault();
    load(button.closest("[data-embed]"));
  });
})();
