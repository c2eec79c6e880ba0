// A small, safe Markdown subset rendered as DOM nodes: the agent's text never becomes HTML.
// Paragraphs, fenced code, inline code, **bold**, lists and http(s) links.

export function renderMarkdown(text) {
  const root = document.createDocumentFragment();
  const lines = text.replace(/\r\n/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (line.startsWith("```")) {
      const pre = document.createElement("pre");
      const code = document.createElement("code");
      const body = [];
      for (i += 1; i < lines.length && !lines[i].startsWith("```"); i += 1) body.push(lines[i]);
      code.textContent = body.join("\n");
      pre.append(code);
      root.append(pre);
      i += 1;
    } else if (/^\s*([-*]|\d+\.)\s+/.test(line)) {
      const ordered = /^\s*\d+\./.test(line);
      const list = document.createElement(ordered ? "ol" : "ul");
      while (i < lines.length && /^\s*([-*]|\d+\.)\s+/.test(lines[i])) {
        const item = document.createElement("li");
        item.append(inline(lines[i].replace(/^\s*([-*]|\d+\.)\s+/, "")));
        list.append(item);
        i += 1;
      }
      root.append(list);
    } else if (line.trim() === "") {
      i += 1;
    } else {
      const para = document.createElement("p");
      const body = [];
      while (i < lines.length && lines[i].trim() !== "" && !lines[i].startsWith("```")
             && !/^\s*([-*]|\d+\.)\s+/.test(lines[i])) body.push(lines[i++]);
      para.append(inline(body.join("\n")));
      root.append(para);
    }
  }
  return root;
}

const TOKEN = /(`[^`]+`)|(\*\*[^*]+\*\*)|(\[[^\]]+\]\((https?:\/\/[^\s)]+)\))/;

function inline(text) {
  const out = document.createDocumentFragment();
  let rest = text;
  while (rest) {
    const m = TOKEN.exec(rest);
    if (!m) { out.append(document.createTextNode(rest)); break; }
    if (m.index) out.append(document.createTextNode(rest.slice(0, m.index)));
    let node;
    if (m[1]) { node = document.createElement("code"); node.textContent = m[1].slice(1, -1); }
    else if (m[2]) { node = document.createElement("strong"); node.textContent = m[2].slice(2, -2); }
    else {
      node = document.createElement("a");
      node.textContent = m[3].slice(1, m[3].indexOf("]("));
      node.href = m[4];
      node.rel = "noopener noreferrer";
      node.target = "_blank";
    }
    out.append(node);
    rest = rest.slice(m.index + m[0].length);
  }
  return out;
}
