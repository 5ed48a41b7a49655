// The launcher of the pixel statistics plug-in: what CTK's ctkExampleHostedApp does (a plug-in framework
// whose properties carry the two URLs, the DAH plug-ins installed, the application's plug-in started),
// for this one plug-in. ctkExampleHostedApp cannot start it: its "--plugin NAME" option is taken by
// QApplication (Qt's own -plugin option) before CTK's parser sees it, so it always starts its default,
// org_commontk_dah_exampleapp.
//
//   ctkPixelStatsApp --hostURL URL --applicationURL URL
#include <QApplication>
#include <QDirIterator>
#include <QFileInfo>
#include <QTemporaryDir>
#include <QTextStream>
#include <QUrl>

#include <ctkCommandLineParser.h>
#include <ctkConfig.h>
#include <ctkPluginConstants.h>
#include <ctkPluginContext.h>
#include <ctkPluginException.h>
#include <ctkPluginFramework.h>
#include <ctkPluginFrameworkFactory.h>

int main(int argc, char** argv)
{
  // Declared before the application object, so destroyed after it: the plug-ins' libraries must still be
  // loaded while QApplication cleans up (else it crashes in ~QGuiApplicationPrivate at exit).
  QTemporaryDir storage; // the framework's own state, private to this process
  QScopedPointer<ctkPluginFrameworkFactory> factory;
  QSharedPointer<ctkPluginFramework> framework;
  QApplication app(argc, argv);
  QTextStream err(stderr);

  ctkCommandLineParser parser;
  parser.setArgumentPrefix("--", "-");
  parser.addArgument("hostURL", "", QVariant::String, "the Hosting System's URL");
  parser.addArgument("applicationURL", "", QVariant::String, "where this application serves");
  bool ok = false;
  const QHash<QString, QVariant> arguments = parser.parseArguments(app.arguments(), &ok);
  if (!ok || !arguments.contains("hostURL") || !arguments.contains("applicationURL"))
  {
    err << "usage: ctkPixelStatsApp --hostURL URL --applicationURL URL " << parser.errorString() << "\n";
    return EXIT_FAILURE;
  }

  ctkProperties properties;
  properties.insert("dah.hostURL", arguments.value("hostURL").toString());
  properties.insert("dah.appURL", arguments.value("applicationURL").toString());
  properties.insert(ctkPluginConstants::FRAMEWORK_STORAGE, storage.path());
  properties.insert(ctkPluginConstants::FRAMEWORK_STORAGE_CLEAN,
                    ctkPluginConstants::FRAMEWORK_STORAGE_CLEAN_ONFIRSTINIT);
  factory.reset(new ctkPluginFrameworkFactory(properties));
  framework = factory->getFramework();

  QSharedPointer<ctkPlugin> application;
  try
  {
    framework->init();
    // CTK's DAH plug-ins (core: the SOAP layer; hostedapp: the ApplicationService server and the host's
    // client), then this application's plug-in, which sits next to this executable.
    QStringList plugins;
    QDirIterator ctkPlugins(CTK_PLUGIN_DIR, QStringList() << "liborg_commontk_dah_core.so"
                                                          << "liborg_commontk_dah_hostedapp.so", QDir::Files);
    while (ctkPlugins.hasNext())
    {
      plugins << ctkPlugins.next();
    }
    const QString own = QFileInfo(QDir(app.applicationDirPath()), "liborg_commontk_dah_pixelstats.so").absoluteFilePath();
    foreach (const QString& plugin, plugins)
    {
      framework->getPluginContext()->installPlugin(QUrl::fromLocalFile(plugin));
    }
    application = framework->getPluginContext()->installPlugin(QUrl::fromLocalFile(own));
    framework->start();
    application->start();
  }
  catch (const ctkPluginException& exception)
  {
    err << "cannot start the application's plug-in: " << exception.what() << "\n";
    return EXIT_FAILURE;
  }
  return app.exec();
}
