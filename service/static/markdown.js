// Markdown as DOM nodes, by markdown-it (markdown-it.min.js, vendored; its licence beside it):
// tables, nested lists, blockquotes, code, escapes. The agent's text never becomes HTML:
// `html: false` escapes any tag it holds, links go only to http(s) and open in a new tab, and
// images are not loaded (a model answer must not make the browser fetch anything).
import markdownit from "/static/markdown-it.min.js";

const WEB_LINK = /^https?:\/\//i;
const md = markdownit({ html: false, linkify: false, breaks: true });
md.disable("image");
md.validateLink = (url) => WEB_LINK.test(url.trim());  // a refused link stays text

const renderToken = (tokens, i, options, env, self) => self.renderToken(tokens, i, options);
md.renderer.rules.link_open = (tokens, i, options, env, self) => {
  tokens[i].attrSet("rel", "noopener noreferrer");
  tokens[i].attrSet("target", "_blank");
  return renderToken(tokens, i, options, env, self);
};

export function renderMarkdown(text) {
  const template = document.createElement("template");
  template.innerHTML = md.render(text);  // markdown-it's output: escaped text and its own tags
  return template.content;
}
