# Summarise a data frame of two numeric columns.
#
# Input: the first *.rds file in $WHARF_INPUT_DIR (staged there when an upload triggers
# the job), else the file named by the `input` parameter, else the bundled sample.
# Output: summary.csv in $WHARF_OUTPUT_DIR, one row per column.

params <- jsonlite::fromJSON(Sys.getenv("WHARF_PARAMS", "{}"))
input_dir <- Sys.getenv("WHARF_INPUT_DIR", ".")
output_dir <- Sys.getenv("WHARF_OUTPUT_DIR", "output")

staged <- list.files(input_dir, pattern = "\\.rds$", full.names = TRUE)
path <- if (length(staged) > 0) {
  staged[[1]]
} else if (!is.null(params$input)) {
  params$input
} else {
  "data/sample.rds"
}
message("Reading ", path)
data <- readRDS(path)

# Validate before computing anything, with messages that say what to fix.
if (!is.data.frame(data)) {
  stop("expected a data frame, got an object of class ", class(data)[[1]])
}
numeric_columns <- vapply(data, is.numeric, logical(1))
if (ncol(data) != 2 || !all(numeric_columns)) {
  stop(sprintf(
    "expected exactly two numeric columns, got %d column(s): %s",
    ncol(data),
    paste(sprintf("%s (%s)", names(data), vapply(data, function(c) class(c)[[1]], "")), collapse = ", ")
  ))
}
if (nrow(data) < 2) {
  stop("expected at least two rows, got ", nrow(data))
}

describe <- function(values) {
  present <- values[!is.na(values)]
  c(
    n = length(present),
    missing = sum(is.na(values)),
    mean = mean(present),
    sd = sd(present),
    min = min(present),
    median = median(present),
    max = max(present)
  )
}
summary <- data.frame(column = names(data), t(vapply(data, describe, numeric(7))), row.names = NULL)
summary$correlation <- cor(data[[1]], data[[2]], use = "complete.obs")

dir.create(output_dir, showWarnings = FALSE, recursive = TRUE)
target <- file.path(output_dir, "summary.csv")
write.csv(summary, target, row.names = FALSE)
print(summary)
message("Wrote ", target)
