# Bitcoin prices as an API. Run locally with:
#   PORT=8000 Rscript -e "plumber::pr_run(plumber::pr('plumber.R'), port = 8000)"

prices <- read.csv("prices.csv", stringsAsFactors = FALSE)
prices$date <- as.Date(prices$date)

#* Liveness for Wharf's health checks.
#* @get /healthz
#* @serializer unboxedJSON
function() {
  list(ok = TRUE)
}

#* The latest price and the change over the period.
#* @get /price
#* @serializer unboxedJSON
function() {
  last <- prices[nrow(prices), ]
  list(
    symbol = "BTC",
    date = format(last$date),
    close = last$close,
    change_pct = round(100 * (last$close / prices$close[1] - 1), 2),
    replica = Sys.getenv("WHARF_REPLICA_ID")
  )
}

#* Closing prices, optionally the last `days` only.
#* @param days:int how many days, newest last
#* @get /history
#* @serializer json
function(days = nrow(prices)) {
  days <- max(1L, min(as.integer(days), nrow(prices)))
  tail(prices, days)
}

#* A chart of the closing price.
#* @get /chart.png
#* @serializer png list(width = 640, height = 360)
function() {
  plot(prices$date, prices$close, type = "l", lwd = 2, col = "#f7931a",
       xlab = "", ylab = "USD", main = "BTC close")
}

#* A small HTML report.
#* @get /report
#* @serializer html
function() {
  last <- prices[nrow(prices), ]
  paste0(
    "<!doctype html><html><head><title>BTC report</title></head><body>",
    "<h1>BTC</h1><p>Close on ", format(last$date), ": <b>", format(last$close, big.mark = ","),
    " USD</b></p><img src=\"chart.png\" alt=\"chart\"></body></html>"
  )
}

#* Fails on purpose: the process exits, and Wharf restarts the replica.
#* @post /crash
function() {
  quit(status = 3, save = "no")
}
