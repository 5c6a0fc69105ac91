// Opens ComfyUI's own frontend in a headless Chromium, as a user would: the Templates menu, the
// pack's entry under Extensions, each named template, Run, and the video its Save Video node shows.
// Usage: node run_templates.mjs PLAN.json   (PLAN: {url, category, out_dir, timeout_s,
// run: [{name, videos, queue}]}). Every template is opened and the prompt the frontend would queue is
// read (app.graphToPrompt); those with queue true are also Run. Prints one JSON line:
// {listed, runs: [{name, prompt, seconds, videos, dialogs}], page_errors}.
import fs from "node:fs";
import path from "node:path";
import chromium from "@sparticuz/chromium";
import puppeteer from "puppeteer-core";

const plan = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const TEMPLATES_OPEN = () => document.body.innerText.includes("All Templates");

function dialogTexts(page) {
  return page.evaluate(() => [...document.querySelectorAll("[role=dialog], [role=alertdialog]")]
    .map((d) => d.innerText.trim()).filter(Boolean));
}

async function clickByText(page, selector, text) {
  const found = await page.evaluate((selector, text) => {
    const element = [...document.querySelectorAll(selector)].find((e) => e.innerText.trim() === text);
    if (!element) return false;
    element.scrollIntoView({ block: "center" });
    element.click();
    return true;
  }, selector, text);
  if (!found) throw new Error(`no ${selector} reading "${text}" on the page`);
}

async function openPackTemplates(page) {
  if (!(await page.evaluate(TEMPLATES_OPEN))) {
    await page.click("button[aria-label=Templates]");
    await page.waitForFunction(TEMPLATES_OPEN, { timeout: 60000 });
  }
  await clickByText(page, "span", plan.category);
  await page.waitForFunction((category) => [...document.querySelectorAll("[role=dialog] h2, [role=dialog] span")]
    .some((e) => e.innerText.trim() === category), { timeout: 30000 }, plan.category);
  await new Promise((resolve) => setTimeout(resolve, 500));
  return page.evaluate(() => [...document.querySelectorAll("[role=dialog] h3")].map((h) => h.innerText.trim()));
}

function videosShown(page) {
  return page.evaluate(() => [...document.querySelectorAll("video")]
    .filter((v) => v.src && v.readyState >= 2)
    .map((v) => ({ file: new URL(v.src).searchParams.get("filename"), width: v.videoWidth, height: v.videoHeight,
      seconds: v.duration })));
}

async function runTemplate(page, item) {
  await openPackTemplates(page);
  await clickByText(page, "[role=dialog] h3", item.name);
  await page.waitForFunction(() => !document.body.innerText.includes("All Templates"), { timeout: 60000 });
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const dialogs = await dialogTexts(page);
  const prompt = await page.evaluate(async () => (await window.app.graphToPrompt()).output);
  if (!item.queue) {
    await page.screenshot({ path: path.join(plan.out_dir, `${item.name}.png`) });
    return { name: item.name, prompt, dialogs };
  }
  const before = new Set((await videosShown(page)).map((v) => v.file));
  const started = Date.now();
  await page.click("button[aria-label=Run]");
  const deadline = started + (plan.timeout_s || 600) * 1000;
  let fresh = [];
  while (Date.now() < deadline) {
    fresh = (await videosShown(page)).filter((v) => !before.has(v.file));
    const errors = (await dialogTexts(page)).filter((text) => /error|failed/i.test(text));
    if (errors.length) return { name: item.name, prompt, error: errors.join(" | "), dialogs };
    if (fresh.length >= item.videos) break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const seconds = (Date.now() - started) / 1000;
  await page.screenshot({ path: path.join(plan.out_dir, `${item.name}.png`) });
  if (fresh.length) {
    const player = await page.$(`video[src*="filename=${encodeURIComponent(fresh[0].file)}"]`);
    if (player) await player.screenshot({ path: path.join(plan.out_dir, `${item.name}_video.png`) });
  }
  return { name: item.name, prompt, seconds, videos: fresh, dialogs };
}

const browser = await puppeteer.launch({
  executablePath: await chromium.executablePath(),
  args: chromium.args,
  headless: true,
  defaultViewport: { width: 1400, height: 900 },
});
const pageErrors = [];
const result = { runs: [] };
try {
  const page = await browser.newPage();
  page.on("pageerror", (error) => pageErrors.push(String(error).slice(0, 300)));
  await page.goto(plan.url, { waitUntil: "networkidle0", timeout: 180000 });
  await page.waitForSelector("button[aria-label=Templates]", { timeout: 120000 });
  result.listed = await openPackTemplates(page);
  await page.screenshot({ path: path.join(plan.out_dir, "templates_menu.png") });
  for (const item of plan.run) result.runs.push(await runTemplate(page, item));
} catch (error) {
  result.failure = String(error.stack || error);
} finally {
  await browser.close();
}
result.page_errors = pageErrors;
console.log(JSON.stringify(result));
