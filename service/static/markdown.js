// A small, safe Markdown subset rendered as DOM nodes: the agent's text never becomes HTML.
// Headings, paragraphs (line breaks kept), fenced code, inline code, **bold**, *italic*, lists
// and http(s) links.

const BULLET = /^\s*[-*+]\s+/;
const NUMBER = /^\s*\d+[.)]\s+/;
const HEADING = /^(#{1,6})\s+(.*)$/;

function listKind(line) {
  if (NUMBER.test(line)) return "ol";
  if (BULLET.test(line)) return "ul";
  return null;
}

function startsBlock(line) {
  return line.startsWith("```") || HEADING.test(line) || listKind(line) !== null;
}

export function renderMarkdown(text) {
  const root = document.createDocumentFragment();
  const lines = text.replace(/\r\n/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const heading = HEADING.exec(line);
    const kind = listKind(line);
    if (line.startsWith("```")) {
      const pre = document.createElement("pre");
      const code = document.createElement("code");
      const body = [];
      for (i += 1; i < lines.length && !lines[i].startsWith("```"); i += 1) body.push(lines[i]);
      code.textContent = body.join("\n");
      pre.append(code);
      root.append(pre);
      i += 1;
    } else if (heading) {
      const h = document.createElement(`h${heading[1].length}`);
      h.append(inline(heading[2].replace(/\s+#+\s*$/, "")));
      root.append(h);
      i += 1;
    } else if (kind) {
      const list = document.createElement(kind);
      const marker = kind === "ol" ? NUMBER : BULLET;
      for (; i < lines.length && listKind(lines[i]) === kind; i += 1) {
        const item = document.createElement("li");
        item.append(inline(lines[i].replace(marker, "")));
        list.append(item);
      }
      root.append(list);
    } else if (line.trim() === "") {
      i += 1;
    } else {
      const para = document.createElement("p");
      const body = [];
      while (i < lines.length && lines[i].trim() !== "" && !startsBlock(lines[i])) body.push(lines[i++]);
      para.append(inline(body.join("\n")));
      root.append(para);
    }
  }
  return root;
}

const TOKEN = /(`[^`]+`)|(\*\*[^*]+\*\*)|(\*[^*\s][^*]*\*)|(\[[^\]]+\]\((https?:\/\/[^\s)]+)\))/;

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
    else if (m[3]) { node = document.createElement("em"); node.textContent = m[3].slice(1, -1); }
    else {
      node = document.createElement("a");
      node.textContent = m[4].slice(1, m[4].indexOf("]("));
      node.href = m[5];
      node.rel = "noopener noreferrer";
      node.target = "_blank";
    }
    out.append(node);
    rest = rest.slice(m.index + m[0].length);
  }
  return out;
}
