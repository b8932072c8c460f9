/*
 * fuzz_api.c - libFuzzer target for what the web side (req.c, auth.c,
 * page.c, api.c through http.c's route table) parses from the network:
 * request line, query strings, form bodies, cookies, bearer tokens and the
 * submissions API's JSON.  Input: fields separated by '\n' in the order
 * method, path, query, authorization, content-type, cookie, then the body
 * (the rest, newlines included).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cutoffd.h"

static const char conf_text[] =
	"[daemon]\npublic_url = http://127.0.0.1:8470\n"
	"[mail]\ntransport = maildir\nmaildir = /tmp/cutoffd-fuzz-mail\n"
	"from = Thường trực <tt@example.vn>\n"
	"[secretariat]\nname = Thường trực\nemail = tt@example.vn\n"
	"[policy p]\nremind = -1d 0d\nescalate = +1d head\n"
	"[cycle q1]\ntitle = Báo cáo quý I\ndue = 03-13\nperiod = 12-15 .. 03-13\n"
	"[unit tu-phap]\nname = Phòng Tư pháp\nemail = tp@example.vn\n"
	"head = h@example.vn\ngroups = pb\n"
	"[unit mttq]\nname = MTTQ\nemail = m@example.vn\n";

static struct app app;
static char dbdir[] = "/tmp/cutoffd-fuzz-XXXXXX";

static void
cleanup(void)
{
	char *cmd = xasprintf("rm -rf '%s'", dbdir);

	db_close(app.db);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz_api: could not remove %s\n", dbdir);
	free(cmd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char *path, *err = NULL;
	struct diag d;

	(void)argc;
	(void)argv;
	log_init("fuzz_api", -1);
	diag_init(&d);
	app.conf = conf_parse("fuzz.conf", conf_text, sizeof conf_text - 1,
			      CONF_NO_FILES, &d);
	if (app.conf == NULL) {
		diag_print(&d, stderr);
		abort();
	}
	diag_free(&d);
	app.conf->daemon.admin_token = xstrdup("fuzz-admin-token-0123456789");
	if (mkdtemp(dbdir) == NULL)
		abort();
	atexit(cleanup);
	path = xasprintf("%s/state.db", dbdir);
	app.db = db_open(path, true, &err);
	free(path);
	if (app.db == NULL)
		abort();
	clock_init(&app.clk, true, tz_mktime(app.conf->tz,
					     (struct ymd){2024, 3, 20}, 600), 1.0);
	return 0;
}

/* next '\n'-terminated field of [*p, end) as a NUL-terminated copy */
static char *
field(const char **p, const char *end)
{
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));
	const char *stop = nl != NULL ? nl : end;
	char *s = xstrndup(*p, (size_t)(stop - *p));

	*p = nl != NULL ? nl + 1 : end;
	return s;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	struct http_req q;
	struct http_resp r;
	char *f[6];
	size_t i;

	for (i = 0; i < 6; i++)
		f[i] = field(&p, end);
	memset(&q, 0, sizeof q);
	memset(&r, 0, sizeof r);
	buf_init(&r.body);
	q.method = f[0];
	q.path = f[1][0] == '/' ? f[1] : "/api/submissions";
	q.query = f[2][0] != '\0' ? f[2] : NULL;
	q.authorization = f[3][0] != '\0' ? f[3] : NULL;
	q.content_type = f[4][0] != '\0' ? f[4] : NULL;
	q.cookie = f[5][0] != '\0' ? f[5] : NULL;
	q.body = p;
	q.body_len = (size_t)(end - p);
	q.client = "127.0.0.1";
	http_dispatch(&app, &q, &r);
	buf_free(&r.body);
	free(r.location);
	free(r.set_cookie);
	for (i = 0; i < 6; i++)
		free(f[i]);
	return 0;
}
