/*
 * fixture.h - the common fixture of module tests that render notices: a
 * configuration parsed from text (no files but the shipped templates) and
 * a fresh state store in a temporary directory.  Include after cmocka.h
 * and cutoffd.h.
 */
#ifndef TEMPLATES_DIR
#define TEMPLATES_DIR "conf/templates"
#endif

struct fix {
	char *dir;
	struct conf *c;
	struct db *db;
};

static struct fix *
fix_new(const char *conf_text)
{
	struct fix *f = xcalloc(1, sizeof *f);
	char tmpl[] = "/tmp/cutoffd-test-XXXXXX";
	struct diag d;
	char *path, *err = NULL;

	assert_non_null(mkdtemp(tmpl));
	f->dir = xstrdup(tmpl);
	diag_init(&d);
	f->c = conf_parse("test.conf", conf_text, strlen(conf_text),
			  CONF_NO_FILES, &d);
	diag_print(&d, stderr);
	assert_non_null(f->c);
	f->c->tmpl = tmpl_load(TEMPLATES_DIR, "vi", &d);
	diag_print(&d, stderr);
	assert_non_null(f->c->tmpl);
	diag_free(&d);
	path = xasprintf("%s/state.db", f->dir);
	f->db = db_open(path, true, &err);
	if (f->db == NULL)
		print_error("db_open: %s\n", err);
	assert_non_null(f->db);
	free(path);
	return f;
}

static void
fix_free(struct fix *f)
{
	char *cmd = xasprintf("rm -rf '%s'", f->dir);

	db_close(f->db);
	tmpl_free(f->c->tmpl);
	f->c->tmpl = NULL;
	conf_free(f->c);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(f->dir);
	free(f);
}
