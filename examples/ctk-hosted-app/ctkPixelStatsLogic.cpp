#include "ctkPixelStatsLogic_p.h"

#include <QApplication>
#include <QDebug>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QTextStream>
#include <QUrl>

#include <ctkDicomAvailableDataHelper.h>
#include <ctkDicomHostInterface.h>
#include <ctkDicomObjectLocatorCache.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmimgle/dcmimage.h>

namespace
{
const char* const ExplicitVRLittleEndian = "1.2.840.10008.1.2.1";

// A file: URI as a local path. CTK's own hosts hand out "file:////abs"; a PS3.19 host "file:///abs". Both
// are read with QUrl (CTK's example deletes 8 characters, which works only for CTK's form).
QString localPath(const QString& uri)
{
  QUrl url(uri);
  if (url.isLocalFile())
  {
    return QDir::cleanPath(url.toLocalFile());
  }
  return QString();
}
}

ctkPixelStatsLogic::ctkPixelStatsLogic(ctkPluginContext* context)
  : ctkDicomAbstractApp(context), Processed(false)
{
  // The host calls arrive on the SOAP server's threads: the work is queued to the main thread.
  connect(this, SIGNAL(startProgress()), this, SLOT(onStartProgress()), Qt::QueuedConnection);
  connect(this, SIGNAL(cancelProgress()), this, SLOT(onCancelProgress()), Qt::QueuedConnection);
  connect(this, SIGNAL(exitHostedApp()), this, SLOT(onExitHostedApp()), Qt::QueuedConnection);
  connect(this, SIGNAL(dataAvailable()), this, SLOT(onDataAvailable()), Qt::QueuedConnection);
}

void ctkPixelStatsLogic::announceReady()
{
  getHostInterface()->notifyStateChanged(ctkDicomAppHosting::IDLE);
}

bool ctkPixelStatsLogic::bringToFront(const QRect& requestedScreenArea)
{
  Q_UNUSED(requestedScreenArea)
  return false; // no window to show
}

void ctkPixelStatsLogic::onStartProgress()
{
  this->Processed = false;
  cleanIncomingData();
  setInternalState(ctkDicomAppHosting::INPROGRESS);
  getHostInterface()->notifyStateChanged(ctkDicomAppHosting::INPROGRESS);
}

void ctkPixelStatsLogic::onDataAvailable()
{
  // The host announces the task's inputs in one or more NotifyDataAvailable calls; the last one says so.
  if (this->Processed || !lastIncomingData() || getState() != ctkDicomAppHosting::INPROGRESS)
  {
    return;
  }
  this->Processed = true;
  process();
}

void ctkPixelStatsLogic::process()
{
  ctkDicomHostInterface* host = getHostInterface();
  const QList<QUuid> uuids = ctkDicomAvailableDataHelper::getAllUuids(getIncomingAvailableData());
  const QList<ctkDicomAppHosting::ObjectLocator> locators =
    host->getData(uuids, QList<QString>() << ExplicitVRLittleEndian, true);

  QString table("SOPInstanceUID,Rows,Columns,Minimum,Maximum\n");
  int rows = 0;
  foreach (const ctkDicomAppHosting::ObjectLocator& locator, locators)
  {
    const QString path = localPath(locator.URI);
    if (path.isEmpty() || locator.offset != 0)
    {
      report(ctkDicomAppHosting::WARNING, "1", "cannot read " + locator.URI);
      continue;
    }
    DcmFileFormat file;
    OFString sopInstanceUid;
    if (file.loadFile(QFile::encodeName(path).constData()).bad())
    {
      report(ctkDicomAppHosting::WARNING, "2", "not a DICOM file: " + path);
      continue;
    }
    file.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, sopInstanceUid);
    DicomImage image(&file, EXS_Unknown);
    double minimum = 0, maximum = 0;
    if (image.getStatus() != EIS_Normal || !image.getMinMaxValues(minimum, maximum))
    {
      report(ctkDicomAppHosting::WARNING, "3", "no pixel data in " + path);
      continue;
    }
    table += QString("%1,%2,%3,%4,%5\n")
               .arg(sopInstanceUid.c_str())
               .arg(image.getHeight())
               .arg(image.getWidth())
               .arg(minimum)
               .arg(maximum);
    ++rows;
  }

  const QString folder = outputFolder();
  QFile output(QDir(folder).filePath("pixel-stats.csv"));
  if (rows == 0 || folder.isEmpty() || !output.open(QIODevice::WriteOnly | QIODevice::Truncate))
  {
    report(ctkDicomAppHosting::FATALERROR, "4",
           QString("read %1 of %2 inputs; output folder '%3'").arg(rows).arg(locators.count()).arg(folder));
    setInternalState(ctkDicomAppHosting::CANCELED);
    host->notifyStateChanged(ctkDicomAppHosting::CANCELED);
    setInternalState(ctkDicomAppHosting::IDLE);
    host->notifyStateChanged(ctkDicomAppHosting::IDLE);
    return;
  }
  output.write(table.toUtf8());
  output.close();

  // The helper puts the file in this application's locator cache, which answers the host's GetData.
  ctkDicomAppHosting::AvailableData result;
  ctkDicomAvailableDataHelper::addToAvailableData(result, objectLocatorCache(), output.fileName());
  if (!publishData(result, true))
  {
    qCritical() << "the host did not accept the result";
  }
  report(ctkDicomAppHosting::INFORMATION, "0", QString("pixel statistics of %1 objects").arg(rows));
  setInternalState(ctkDicomAppHosting::COMPLETED);
  host->notifyStateChanged(ctkDicomAppHosting::COMPLETED);
}

QString ctkPixelStatsLogic::outputFolder()
{
  // PS3.19 hosts answer a URI (a folder URI ending in '/'); CTK's own host answered a plain path.
  const QString location = getHostInterface()->getOutputLocation(QStringList() << "file:");
  const QString path = location.startsWith("file:", Qt::CaseInsensitive) ? localPath(location) : location;
  if (!path.isEmpty())
  {
    QDir().mkpath(path);
  }
  return path;
}

void ctkPixelStatsLogic::report(ctkDicomAppHosting::StatusType type, const QString& code, const QString& meaning)
{
  ctkDicomAppHosting::Status status;
  status.statusType = type;
  status.codingSchemeDesignator = "99PIXELSTATS";
  status.codeValue = code;
  status.codeMeaning = meaning;
  getHostInterface()->notifyStatus(status);
}

void ctkPixelStatsLogic::onCancelProgress()
{
  // ctkDicomAbstractApp has already reported CANCELED; nothing runs in the background, so: IDLE.
  setInternalState(ctkDicomAppHosting::IDLE);
  getHostInterface()->notifyStateChanged(ctkDicomAppHosting::IDLE);
}

void ctkPixelStatsLogic::onExitHostedApp()
{
  setInternalState(ctkDicomAppHosting::EXIT);
  getHostInterface()->notifyStateChanged(ctkDicomAppHosting::EXIT);
  qApp->exit(0);
}
